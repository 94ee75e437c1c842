"""Property: the main listener and the admin listener apply the same rules to the same input.

For random configs (override, HSTS mode, request-id pattern), random request ids and trace
context (valid, invalid, non-ASCII) and random headers an app puts on its response, the proxy's
response (the app behind the real main listener) and the admin listener's (a handler on the real
admin app returning the same headers) carry the same security headers with the same values, drop
the same fingerprints, keep or replace the same request id, and keep or replace the same
``traceparent``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.admin.http import Request, Response
from agent.app import create_main
from agent.config import AgentConfig
from agent.metrics import create_registry
from tests.admin.admin_apps import admin_app, make_config

VALID_TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
APP_HEADERS = {
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "default-src 'none'",
    "Strict-Transport-Security": "max-age=5",
    "Referrer-Policy": "origin",
    "Server": "app/1.0",
    "X-Powered-By": "PHP",
    "X-App": "kept",
}
COMPARED = [*APP_HEADERS, "X-Content-Type-Options", "Permissions-Policy", "Cross-Origin-Opener-Policy", "X-XSS-Protection"]

configs = st.fixed_dictionaries(
    {
        "override": st.booleans(),
        "hsts": st.sampled_from(["https", "always", "off"]),
        "pattern": st.sampled_from([r"^[A-Za-z0-9._:+=/@-]{1,128}$", r"\d{1,6}", r"[\w-]+", r".{1,8}"]),
    }
)
request_ids = st.one_of(
    st.none(),
    st.sampled_from(["123", "١٢٣", "abc", "a b", "x" * 200, "req-1", "é", "12345678", "ok:/@"]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12),
)
traceparents = st.one_of(
    st.none(), st.sampled_from([VALID_TP, VALID_TP.upper(), "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "junk"])
)
app_headers = st.dictionaries(st.sampled_from(sorted(APP_HEADERS)), st.just(""), max_size=len(APP_HEADERS)).map(
    lambda chosen: {name: APP_HEADERS[name] for name in chosen}
)


def build(params: dict[str, Any]) -> AgentConfig:
    return make_config(
        security_headers={"override": params["override"], "hsts": params["hsts"]},
        request_id={"pattern": params["pattern"]},
        logging={"access_log": False},
    )


async def raw_get(port: int, path: str, headers: dict[str, str]) -> tuple[dict[str, list[str]], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n{lines}\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    fields: dict[str, list[str]] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields, body


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def both(config: AgentConfig, headers: dict[str, str], returned: dict[str, str]) -> tuple[Any, Any]:
    async def upstream(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"traceparent": request.headers.get("traceparent")}), headers=returned)

    async def admin_handler(request: Request) -> Response:
        assert request.ids is not None
        return Response(200, orjson.dumps({"traceparent": request.ids.traceparent}), headers=returned)

    app = web.Application()
    app.router.add_get("/same", upstream)
    upstream_runner, upstream_port = await serve(app)
    config = make_config(
        upstream={"url": f"http://127.0.0.1:{upstream_port}"},
        security_headers={"override": config.security_headers.override, "hsts": config.security_headers.hsts},
        request_id={"pattern": config.request_id.pattern},
        logging={"access_log": False},
    )
    admin = admin_app(config, {"/same": admin_handler}).server()
    _, admin_port = await admin.start("127.0.0.1", 0)
    from agent.app import create_monitor

    monitor = create_monitor(config)
    registry, http_metrics = create_registry(config, monitor)
    listener = create_main(config, monitor, registry, http_metrics)
    _, main_port = await listener.start("127.0.0.1", 0)
    try:
        return await raw_get(main_port, "/same", headers), await raw_get(admin_port, "/same", headers)
    finally:
        await listener.close(1.0)
        await admin.close(1.0)
        await upstream_runner.cleanup()


@pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
@settings(max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=configs, request_id=request_ids, traceparent=traceparents, returned=app_headers)
def test_main_and_admin_listeners_agree(
    params: dict[str, Any], request_id: str | None, traceparent: str | None, returned: dict[str, str]
) -> None:
    headers = {}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    if traceparent is not None:
        headers["traceparent"] = traceparent
    (main, main_body), (admin, admin_body) = asyncio.run(both(build(params), headers, returned))
    for name in COMPARED:
        assert main.get(name.lower()) == admin.get(name.lower()), name
    main_id, admin_id = main["x-request-id"], admin["x-request-id"]
    assert len(main_id) == len(admin_id) == 1
    assert (main_id[0] == request_id) == (admin_id[0] == request_id), (request_id, main_id, admin_id)
    main_tp, admin_tp = orjson.loads(main_body)["traceparent"], orjson.loads(admin_body)["traceparent"]
    assert (main_tp == traceparent) == (admin_tp == traceparent), (traceparent, main_tp, admin_tp)
