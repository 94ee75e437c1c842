"""The bugs the two copies of the request rules hid, pinned on the real main listener.

In-process: the real main listener and admin app in the test's loop, a real aiohttp app as the
upstream. Header counts are read from the raw multidict, so a doubled header cannot hide.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from agent.config import build_config
from tests.support.inprocess import InProcessAgent, in_process_agent

ORIGIN = "https://app.example"
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def app_with_own_headers() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "200"))
        headers = {"X-Frame-Options": "SAMEORIGIN", "Strict-Transport-Security": "max-age=5"}
        if request.query.get("kind") == "html":
            return web.Response(status=status, text="<h1>boom</h1>", content_type="text/html", headers=headers)
        return web.json_response({"detail": "x"}, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    return app


@pytest.fixture
async def upstream_url(aiohttp_server: Any) -> str:
    server = await aiohttp_server(app_with_own_headers())
    return f"http://127.0.0.1:{server.port}"


def config(upstream_url: str, **sections: Any):  # type: ignore[no-untyped-def]
    return build_config({"upstream": {"url": upstream_url}, **sections}, {}, "test")


@pytest.fixture
async def agent(request: pytest.FixtureRequest, upstream_url: str) -> AsyncIterator[InProcessAgent]:
    sections = getattr(request, "param", {})
    async with in_process_agent(config(upstream_url, **sections)) as running:
        yield running


def one(response: aiohttp.ClientResponse, name: str) -> str:
    values = response.headers.getall(name, [])
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


OVERRIDE = {"security_headers": {"override": True, "hsts": "always"}, "proxy": {"max_body_bytes": 10}}


@pytest.mark.parametrize("agent", [OVERRIDE], indirect=True)
async def test_override_sends_exactly_one_value_on_every_kind_of_response(agent: InProcessAgent) -> None:
    cases = [
        ("GET", "/ok", 200),  # proxied
        ("GET", "/missing?status=404", 404),  # augmented JSON
        ("GET", "/boom?status=500&kind=html", 500),  # replaced HTML 5xx
        ("GET", "/health/live", 200),  # local
        ("POST", "/too-big", 413),  # the agent's own error
    ]
    for method, path, status in cases:
        async with agent.main.request(method, path, data=b"x" * 100 if method == "POST" else None) as response:
            assert response.status == status, path
            assert one(response, "X-Frame-Options") == "DENY", path
            assert one(response, "Strict-Transport-Security") == "max-age=63072000; includeSubDomains", path


async def test_default_keeps_the_apps_value(agent: InProcessAgent) -> None:
    async with agent.main.get("/ok") as response:
        assert one(response, "X-Frame-Options") == "SAMEORIGIN"
        assert one(response, "X-Content-Type-Options") == "nosniff"


CORS = {"cors": {"allowed_origins": [ORIGIN], "allow_credentials": True, "allowed_headers": ["X-Custom", "Content-Type"]}}


@pytest.mark.parametrize("agent", [CORS], indirect=True)
async def test_cors_with_credentials_has_each_header_once(agent: InProcessAgent) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-custom"}
    async with agent.main.options("/api", headers=preflight) as response:
        assert response.status == 204
        assert one(response, "Access-Control-Allow-Credentials") == "true"
        assert one(response, "Access-Control-Allow-Origin") == ORIGIN
        assert "PUT" in one(response, "Access-Control-Allow-Methods")
    for method, path, status in (
        ("PUT", "/api", 200),
        ("GET", "/x?status=404", 404),
        ("GET", "/health/live", 200),
        ("POST", "/health/live", 405),
    ):
        async with agent.main.request(method, path, headers={"Origin": ORIGIN}) as response:
            assert response.status == status, path
            assert one(response, "Access-Control-Allow-Credentials") == "true", path
            assert one(response, "Access-Control-Allow-Origin") == ORIGIN, path


async def test_rejected_request_logs_the_ids_its_answer_carries(agent: InProcessAgent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.proxy")
    port = int(agent.main_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01garbage\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    doc = orjson.loads(data.split(b"\r\n\r\n", 1)[1])
    records = [r for r in caplog.records if r.getMessage() == "request rejected"]
    assert records, "no rejection logged"
    record = records[-1]
    assert record.request_id == doc["request_id"] and record.error_id == doc["error_id"]  # type: ignore[attr-defined]
    assert isinstance(record.trace_id, str) and len(record.trace_id) == 32  # type: ignore[attr-defined]


async def test_rejection_after_the_head_keeps_the_incoming_ids(agent: InProcessAgent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.proxy")
    port = int(agent.main_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-Request-ID: mine-1\r\ntraceparent: " + TP.encode() + b"\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    assert data.startswith(b"HTTP/1.1 400 ") and b"X-Request-ID: mine-1\r\n" in data
    records = [r for r in caplog.records if r.getMessage() in ("request rejected", "request failed")]
    assert records[-1].request_id == "mine-1" and records[-1].trace_id == TP.split("-")[1]  # type: ignore[attr-defined]


@pytest.mark.parametrize("agent", [{"proxy": {"header_timeout_s": 0.5, "keepalive_timeout_s": 30.0}}], indirect=True)
async def test_a_connection_that_sends_nothing_gets_the_header_deadline(agent: InProcessAgent) -> None:
    port = int(agent.main_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    waited = asyncio.get_running_loop().time() - started
    writer.close()
    assert 0.4 < waited < 2.0, waited
    # A connection that finished a request waits for keep-alive's deadline instead.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health/live HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    await asyncio.sleep(1.2)
    assert not reader.at_eof()
    writer.close()
