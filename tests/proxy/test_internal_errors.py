"""A bug inside the main listener, injected at each stage: 500 ``INTERNAL_ERROR``, logged at ERROR
with the traceback, the in-flight slot and the upstream connection released, the client connection
closed after the answer, and the agent keeps serving.

The faults are injected by replacing module-level functions, which compiled modules (mypyc) call
natively: these tests run in the suite's pure-Python pass (scripts/test.sh, AGENT_PURE_PYTHON=1),
where the same source runs; the handlers they reach are the same lines in both forms."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from agent import compiled
from agent.config import build_config
from agent.proxy import exchange as exchange_module
from agent.proxy import listener as listener_module
from tests.support.inprocess import InProcessAgent, in_process_agent

pytestmark = pytest.mark.skipif(
    compiled.code.startswith("compiled"), reason="fault injection patches module functions: runs in the pure-Python pass"
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Injected(RuntimeError):
    """The fault this test puts into the agent."""


def boom(*args: Any, **kwargs: Any) -> Any:
    raise Injected("injected fault")


@pytest.fixture
async def agent(aiohttp_server: Any) -> AsyncIterator[InProcessAgent]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100_000 if request.path == "/big" else b"ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    server = await aiohttp_server(app)
    config = build_config({"upstream": {"url": f"http://127.0.0.1:{server.port}"}}, {}, "test")
    async with in_process_agent(config) as running:
        yield running


async def raw(agent: InProcessAgent, path: str = "/x", request_id: str = "req-fault-1") -> bytes:
    port = int(agent.main_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: a\r\nX-Request-ID: {request_id}\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)  # read to EOF: the agent closes the connection
    writer.close()
    return data


def assert_released(agent: InProcessAgent) -> None:
    ctx = agent.listener.ctx
    assert ctx.in_flight == 0
    busy = [c for c in ctx.pool.open if c not in ctx.pool.idle]
    assert busy == [], "an upstream connection was left attached"


async def assert_still_serving(agent: InProcessAgent) -> None:
    async with agent.main.get("/after") as response:
        assert response.status == 200 and await response.read() == b"ok"
    async with agent.main.get("/health/live") as response:
        assert response.status == 200


STAGES = [
    ("parsing the request head", listener_module, "parse_request_head", "/x", False),
    ("building the upstream head", listener_module, "upstream_request_head", "/x", True),
    ("a local answer", exchange_module, "local_answer", "/health/ready", True),
    ("the upstream response head", exchange_module, "proxied_head", "/x", True),
    ("the access-log event", exchange_module, "access_event", "/x", True),
]


@pytest.mark.parametrize(("stage", "module", "name", "path", "keeps_id"), STAGES, ids=[s[0] for s in STAGES])
async def test_fault_is_a_500_with_the_request_id(
    agent: InProcessAgent,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    stage: str,
    module: Any,
    name: str,
    path: str,
    keeps_id: bool,
) -> None:
    caplog.set_level(logging.INFO)
    agent.listener.ctx.access_log.enabled = True  # created before caplog lowered the level
    with monkeypatch.context() as patch:
        patch.setattr(module, name, boom)
        data = await raw(agent, path)
    head, _, body = data.partition(b"\r\n\r\n")
    if name == "access_event":
        # The response was already sent when the log line failed: the client got it whole.
        assert head.startswith(b"HTTP/1.1 200 "), head
    else:
        assert head.startswith(b"HTTP/1.1 500 "), head
        assert b"Connection: close" in head
        doc = orjson.loads(body)
        assert doc["error_code"] == "INTERNAL_ERROR" and UUID4.match(doc["error_id"])
        assert "injected" not in body.decode()
        if keeps_id:
            assert doc["request_id"] == "req-fault-1"
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and getattr(r, "error_id", None) == doc["error_id"]]
        assert errors and errors[0].exc_info is not None and errors[0].exc_info[0] is Injected
    assert any(r.exc_info and r.exc_info[0] is Injected for r in caplog.records if r.levelno == logging.ERROR)
    assert_released(agent)
    await assert_still_serving(agent)


async def test_fault_while_forwarding_begins(agent: InProcessAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(exchange_module.Exchange, "_forward", boom)
        data = await raw(agent)
    assert data.startswith(b"HTTP/1.1 500 ") and b'"request_id":"req-fault-1"' in data
    assert_released(agent)
    await assert_still_serving(agent)


async def test_fault_when_the_connection_is_attached(agent: InProcessAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    agent.listener.ctx.pool.close()  # no idle connection: the exchange connects in a task
    with monkeypatch.context() as patch:
        patch.setattr(exchange_module.Exchange, "_attach", boom)
        data = await raw(agent)
    assert data.startswith(b"HTTP/1.1 500 ") and b"INTERNAL_ERROR" in data
    assert agent.listener.ctx.pool.size == 0
    assert_released(agent)
    await assert_still_serving(agent)


async def test_fault_mid_response_cuts_the_connection(agent: InProcessAgent, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(exchange_module.Exchange, "on_response_body", boom)
        data = await raw(agent, "/big")
    assert len(data) < 100_000 and b"HTTP/1.1 500" not in data  # a response under way is cut, never turned into an error
    assert_released(agent)
    await assert_still_serving(agent)


async def test_fault_in_a_pipelined_request_is_answered_after_the_earlier_one(
    agent: InProcessAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(agent.main_url.rsplit(":", 1)[1])
    real = listener_module.parse_request_head
    calls = 0

    def second_fails(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Injected("second request")
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(listener_module, "parse_request_head", second_fails)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    first, second = data.split(b"HTTP/1.1 ")[1:3]
    assert first.startswith(b"200 ") and first.endswith(b"ok")
    assert second.startswith(b"500 ") and b"INTERNAL_ERROR" in second
    assert_released(agent)
    await assert_still_serving(agent)
