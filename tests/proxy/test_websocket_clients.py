"""Real WebSocket clients through the real main listener to a real WebSocket server.

aiohttp's client and the ``websockets`` library each talk to ``tests/support/websocket_app.py``
(an aiohttp server) through the agent's main listener, in-process: text, binary, ping/pong both
ways, close codes both ways, a push after a long silence, a 16 MiB message and 10,000 small ones.
The agent's head and keep-alive deadlines are set far below the silence, so the push only
arrives if they stop applying after the 101 (envoyproxy/envoy#20062 is that bug in another proxy).
The handshake keeps what the app needs (``Sec-WebSocket-Key``, ``Origin``) and gains the agent's
ids and ``X-Forwarded-For``; a tunnel ends with one access-log line and leaves the metrics at 0.
The app's connection cut mid-tunnel (``FaultProxy``, by RST or FIN) ends the client's, a client
vanishing ends the app's, and nothing leaks: no tunnel, no in-flight request, metrics back to 0.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection as WebsocketsConnection
from websockets.asyncio.client import connect as websockets_connect

from agent.config import build_config
from agent.proxy.access_log import AccessLog
from tests.support.faultproxy import FaultProxy
from tests.support.inprocess import InProcessAgent, in_process_agent
from tests.support.polling import async_wait_until
from tests.support.responses import UUID4
from tests.support.websocket_app import MAX_MESSAGE_BYTES, make_websocket_app, wait_session

CLIENTS = ("aiohttp", "websockets")
DEADLINE_S = 0.5  # the agent's head, keep-alive, body and upstream read deadlines in these tests
ORIGIN = "https://app.example"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
RECEIVE_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- the agent and the app
@dataclass
class Setup:
    agent: InProcessAgent
    app_server: TestServer
    access: io.BytesIO

    @property
    def app(self) -> Any:
        return self.app_server.app

    def url(self, path: str) -> str:
        return self.agent.main_url.replace("http://", "ws://") + path

    @property
    def tunnels(self) -> set[Any]:
        return self.agent.listener.ctx.tunnels

    def access_lines(self) -> list[dict[str, Any]]:
        self.agent.listener.ctx.access_log.flush()
        return [orjson.loads(line) for line in self.access.getvalue().splitlines() if line.strip()]

    def closed_by(self, request_id: str) -> list[str]:
        """``closed_by`` of the access lines of the tunnels opened by ``request_id``."""
        return [r["closed_by"] for r in self.access_lines() if r.get("request_id") == request_id and r["status"] == 101]

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = await self.agent.admin.get("/metrics")
        assert response.status == 200
        text = await response.text()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def no_tunnels_left(self, timeout_s: float = 5.0) -> None:
        assert await async_wait_until(lambda: not self.tunnels, timeout_s), f"tunnels still open: {self.tunnels}"


def agent_config(upstream_url: str, **proxy: Any) -> Any:
    return build_config(
        {
            "upstream": {"url": upstream_url, "read_timeout_s": DEADLINE_S},
            "proxy": {
                "header_timeout_s": DEADLINE_S,
                "keepalive_timeout_s": DEADLINE_S,
                "body_timeout_s": DEADLINE_S,
                **proxy,
            },
            "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
        },
        {},
        "test",
    )


@asynccontextmanager
async def running(upstream_url: str, app_server: TestServer, **proxy: Any) -> AsyncIterator[Setup]:
    async with in_process_agent(agent_config(upstream_url, **proxy)) as agent:
        access = io.BytesIO()
        log = AccessLog(enabled=True, direct=True, stream=access)
        log.enabled = True  # whatever level pytest's logging left the access logger at
        agent.listener.ctx.access_log = log
        yield Setup(agent, app_server, access)


@pytest.fixture
async def app_server(aiohttp_server: Any) -> TestServer:
    return await aiohttp_server(make_websocket_app())


@pytest.fixture
async def setup(app_server: TestServer) -> AsyncIterator[Setup]:
    async with running(f"http://127.0.0.1:{app_server.port}", app_server) as made:
        yield made


# --------------------------------------------------------------------------- the two clients, one shape
@dataclass
class Client:
    """One open WebSocket, whichever library opened it."""

    kind: str
    ws: Any
    request_headers: dict[str, str]  # the handshake as the client sent it
    response_status: int
    response_headers: dict[str, str]  # the 101 as the client got it
    pongs: list[bytes] = field(default_factory=list)

    async def send(self, data: str | bytes) -> None:
        if self.kind == "websockets":
            await self.ws.send(data)
        elif isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    async def recv(self) -> str | bytes:
        """The next data message; pings from the app are answered on the way."""
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            if self.kind == "websockets":
                return await self.ws.recv()  # type: ignore[no-any-return]
            while True:
                msg = await self.ws.receive()
                if msg.type is WSMsgType.PING:
                    await self.ws.pong(msg.data)
                elif msg.type is WSMsgType.PONG:
                    self.pongs.append(msg.data)
                elif msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    return msg.data  # type: ignore[no-any-return]
                else:
                    raise AssertionError(f"expected a data message, got {msg.type!r} {msg.data!r}")

    async def ping(self, payload: bytes) -> bytes:
        """Ping the app; the payload of its pong."""
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            if self.kind == "websockets":
                await (await self.ws.ping(payload))  # resolves on the pong with this payload
                return payload
            await self.ws.ping(payload)
            while not self.pongs:
                msg = await self.ws.receive()
                assert msg.type is WSMsgType.PONG, msg
                self.pongs.append(msg.data)
            return self.pongs.pop(0)

    async def close(self, code: int, reason: str) -> None:
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            if self.kind == "websockets":
                await self.ws.close(code=code, reason=reason)
            else:
                await self.ws.close(code=code, message=reason.encode())

    async def closed_by_app(self) -> int | None:
        """Wait for the app's Close frame (answering it); its code."""
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            if self.kind == "websockets":
                try:
                    message = await self.ws.recv()
                except websockets.ConnectionClosed as exc:
                    return exc.rcvd.code if exc.rcvd is not None else None
                raise AssertionError(f"expected the app to close, got {message!r}")
            msg = await self.ws.receive()
            assert msg.type is WSMsgType.CLOSE, msg
            return msg.data  # type: ignore[no-any-return]

    async def connection_ended(self) -> str:
        """Wait until the connection ends without the app's Close frame; how it ended."""
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            if self.kind == "websockets":
                try:
                    message = await self.ws.recv()
                except websockets.ConnectionClosed as exc:
                    return f"closed rcvd={exc.rcvd}"
                raise AssertionError(f"expected the connection to end, got {message!r}")
            msg = await self.ws.receive()
            assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR, WSMsgType.CLOSE), msg
            return f"{msg.type.name} {msg.data!r}"


@asynccontextmanager
async def connect(kind: str, url: str, headers: dict[str, str] | None = None) -> AsyncIterator[Client]:
    headers = {"Origin": ORIGIN, **(headers or {})}
    if kind == "websockets":
        async with websockets_connect(
            url, additional_headers=headers, max_size=MAX_MESSAGE_BYTES, ping_interval=None, open_timeout=5, close_timeout=5
        ) as ws:
            assert isinstance(ws, WebsocketsConnection)
            assert ws.request is not None and ws.response is not None
            yield Client(
                kind, ws, dict(ws.request.headers.raw_items()), ws.response.status_code, dict(ws.response.headers.raw_items())
            )
        return
    seen: dict[str, Any] = {}

    async def on_start(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen["request"] = dict(params.headers)

    async def on_end(session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        seen["status"], seen["response"] = params.response.status, dict(params.response.headers)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    trace.on_request_end.append(on_end)
    async with (
        aiohttp.ClientSession(trace_configs=[trace]) as session,
        session.ws_connect(
            url, headers=headers, autoping=False, max_msg_size=MAX_MESSAGE_BYTES, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        ) as ws,
    ):
        yield Client(kind, ws, seen["request"], seen["status"], seen["response"])


def session_id() -> str:
    return uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------- messages
@pytest.mark.parametrize("kind", CLIENTS)
async def test_text_and_binary_are_echoed(setup: Setup, kind: str) -> None:
    sid = session_id()
    async with connect(kind, setup.url(f"/ws?id={sid}")) as client:
        assert client.response_status == 101
        await client.send("hello ☃")
        assert await client.recv() == "hello ☃"
        await client.send(b"\x00\x01\xff binary")
        assert await client.recv() == b"\x00\x01\xff binary"
    session = await wait_session(setup.app, sid)
    assert session.messages == 2


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_message_right_behind_the_101_is_not_lost(setup: Setup, kind: str) -> None:
    # The app's first frame usually shares a read with its 101: the agent relays it after the head.
    async with connect(kind, setup.url(f"/ws?id={session_id()}&greet=welcome")) as client:
        assert await client.recv() == "welcome"
        await client.send("and then")
        assert await client.recv() == "and then"


async def test_a_frame_sent_behind_the_handshake_reaches_the_app(setup: Setup) -> None:
    # A client that does not wait for the 101: its frame comes in the same read as the handshake.
    sid = session_id()
    key = base64.b64encode(os.urandom(16))
    handshake = (
        b"GET /ws?id=%s HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n\r\n" % (sid.encode(), key)
    )
    hello = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # "Hello", masked (RFC 6455 §5.7)
    port = int(setup.agent.main_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(handshake + hello)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), RECEIVE_TIMEOUT_S)
        assert head.startswith(b"HTTP/1.1 101 "), head
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert b"\r\nSec-WebSocket-Accept: %s\r\n" % accept in head
        assert await asyncio.wait_for(reader.readexactly(7), RECEIVE_TIMEOUT_S) == b"\x81\x05Hello"  # the echo
    finally:
        writer.close()
    session = await wait_session(setup.app, sid)
    assert session.messages == 1


@pytest.mark.parametrize("kind", CLIENTS)
async def test_ping_and_pong_both_ways(setup: Setup, kind: str) -> None:
    sid = session_id()
    async with connect(kind, setup.url(f"/ws?id={sid}")) as client:
        assert await client.ping(b"from the client") == b"from the client"
        await client.send("ping:from the app")  # the app pings; the client's pong comes back as text
        assert await client.recv() == "pong:from the app"
    session = await wait_session(setup.app, sid)
    assert session.pings == [b"from the client"]


@pytest.mark.parametrize("kind", CLIENTS)
async def test_close_code_from_the_client_reaches_the_app(setup: Setup, kind: str) -> None:
    sid = session_id()
    async with connect(kind, setup.url(f"/ws?id={sid}"), {"X-Request-ID": f"close-{sid}"}) as client:
        await client.send("last words")
        assert await client.recv() == "last words"
        await client.close(4000, "client done")
    session = await wait_session(setup.app, sid)
    assert session.close_code == 4000
    await setup.no_tunnels_left()
    # The client began the close handshake, though the app (the server) ends TCP first (RFC 6455 §7.1.1).
    assert setup.closed_by(f"close-{sid}") == ["client"]


@pytest.mark.parametrize("kind", CLIENTS)
async def test_close_code_from_the_app_reaches_the_client(setup: Setup, kind: str) -> None:
    sid = session_id()
    async with connect(kind, setup.url(f"/ws?id={sid}&close=4001"), {"X-Request-ID": f"close-{sid}"}) as client:
        await client.send("one")
        assert await client.recv() == "one"
        assert await client.closed_by_app() == 4001
    session = await wait_session(setup.app, sid)
    # The client's answering Close frame came back through the agent (else aiohttp records 1006);
    # websockets echoes the code (RFC 6455 §5.5.1 "typically"), aiohttp's client answers 1000.
    assert session.close_code == (4001 if kind == "websockets" else 1000)
    await setup.no_tunnels_left()
    assert setup.closed_by(f"close-{sid}") == ["upstream"]


@pytest.mark.parametrize("kind", CLIENTS)
async def test_push_after_a_silence_longer_than_every_http_deadline(setup: Setup, kind: str) -> None:
    silence_s = 2.5  # 5x the head, keep-alive, body and upstream read deadlines
    sid = session_id()
    async with connect(kind, setup.url(f"/ws/push?id={sid}&after_s={silence_s}")) as client:
        started = time.monotonic()
        assert await client.recv() == "push"
        assert time.monotonic() - started >= silence_s - 0.1
        await client.send("still there")
        assert await client.recv() == "still there"
        assert len(setup.tunnels) == 1
    await setup.no_tunnels_left()


@pytest.mark.parametrize("kind", CLIENTS)
async def test_16_mib_message_arrives_intact(setup: Setup, kind: str) -> None:
    message = random.Random(16).randbytes(16 * 1024 * 1024)
    digest = hashlib.sha256(message).hexdigest()
    async with connect(kind, setup.url(f"/ws/sha256?id={session_id()}")) as client:
        await client.send(message)
        assert await client.recv() == digest  # what the app received
    async with connect(kind, setup.url(f"/ws?id={session_id()}")) as client:
        await client.send(message)
        echoed = await client.recv()
        assert isinstance(echoed, bytes) and len(echoed) == len(message)
        assert hashlib.sha256(echoed).hexdigest() == digest  # and back


@pytest.mark.parametrize("kind", CLIENTS)
async def test_ten_thousand_messages_arrive_in_order(setup: Setup, kind: str) -> None:
    count = 10_000
    sid = session_id()
    async with connect(kind, setup.url(f"/ws/sequence?id={sid}")) as client:

        async def send_all() -> None:
            for i in range(count):
                await client.send(str(i))

        async def receive_all() -> list[str | bytes]:
            return [await client.recv() for _ in range(count)]

        _, echoed = await asyncio.gather(send_all(), receive_all())
        assert echoed == [str(i) for i in range(count)]
    session = await wait_session(setup.app, sid)
    assert (session.messages, session.in_order) == (count, True)


# --------------------------------------------------------------------------- handshake
@pytest.mark.parametrize("kind", CLIENTS)
async def test_handshake_keeps_the_clients_fields_and_adds_the_agents(setup: Setup, kind: str) -> None:
    sid = session_id()
    request_id = f"ws-{sid}"
    headers = {"X-Request-ID": request_id, "traceparent": TRACEPARENT}
    async with connect(kind, setup.url(f"/ws?id={sid}"), headers) as client:
        await client.send("hi")
        assert await client.recv() == "hi"
    response = {k.lower(): v for k, v in client.response_headers.items()}
    assert response["x-request-id"] == request_id
    assert response["upgrade"].lower() == "websocket" and response["connection"].lower() == "upgrade"
    assert "sec-websocket-accept" in response  # the client checked it against its key: the handshake worked
    session = await wait_session(setup.app, sid)
    sent = {k.lower(): v for k, v in client.request_headers.items()}
    assert session.header("X-Request-ID") == [request_id]
    assert session.header("traceparent") == [TRACEPARENT]
    assert session.header("X-Forwarded-For") == ["127.0.0.1"]
    assert session.header("Sec-WebSocket-Key") == [sent["sec-websocket-key"]]
    assert session.header("Sec-WebSocket-Version") == ["13"]
    assert session.header("Origin") == [ORIGIN]
    assert [v.lower() for v in session.header("Upgrade")] == ["websocket"]
    assert [v.lower() for v in session.header("Connection")] == ["upgrade"]
    if "sec-websocket-extensions" in sent:  # websockets offers permessage-deflate: passed on as sent
        assert session.header("Sec-WebSocket-Extensions") == [sent["sec-websocket-extensions"]]


async def test_an_invalid_request_id_is_replaced_on_both_sides(setup: Setup) -> None:
    sid = session_id()
    async with connect("websockets", setup.url(f"/ws?id={sid}"), {"X-Request-ID": "not valid!"}) as client:
        await client.send("hi")
        await client.recv()
    given = client.response_headers["X-Request-ID"]
    assert UUID4.match(given), given
    session = await wait_session(setup.app, sid)
    assert session.header("X-Request-ID") == [given]


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_refused_upgrade_is_an_http_answer(setup: Setup, kind: str) -> None:
    request_id = f"refused-{session_id()}"
    with pytest.raises((aiohttp.WSServerHandshakeError, websockets.InvalidStatus)) as refused:
        async with connect(kind, setup.url("/ws/refuse"), {"X-Request-ID": request_id}):
            pass
    status = refused.value.status if kind == "aiohttp" else refused.value.response.status_code  # type: ignore[union-attr]
    assert status == 403
    if kind == "websockets":
        body = orjson.loads(refused.value.response.body)  # type: ignore[union-attr]
        assert body["error"] == "forbidden" and body["request_id"] == request_id
    assert not setup.tunnels
    metrics = await setup.metrics()
    assert metrics[("agent_upgrades_total", frozenset({("status", "403")}))] == 1
    assert metrics[("agent_upgrades_total", frozenset({("status", "101")}))] == 0
    lines = [r for r in setup.access_lines() if r.get("request_id") == request_id]
    assert [r["status"] for r in lines] == [403]


# --------------------------------------------------------------------------- access log and metrics
def tunnel_metrics(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> tuple[float, float, float, float]:
    return (
        metrics[("agent_tunnels_open", frozenset())],
        metrics[("agent_upgrades_total", frozenset({("status", "101")}))],
        metrics[("agent_tunnel_bytes_total", frozenset({("direction", "client_to_upstream")}))],
        metrics[("agent_tunnel_bytes_total", frozenset({("direction", "upstream_to_client")}))],
    )


def masked_frame_size(payload_bytes: int) -> int:
    """A client's frame (RFC 6455 §5.2): 2 header bytes, 4 mask bytes, the payload (< 126 bytes)."""
    return 2 + 4 + payload_bytes


async def test_a_tunnel_is_one_access_line_and_metrics_go_back_to_zero(setup: Setup) -> None:
    sid = session_id()
    request_id = f"logged-{sid}"
    assert tunnel_metrics(await setup.metrics()) == (0, 0, 0, 0)
    async with connect("aiohttp", setup.url(f"/ws?id={sid}"), {"X-Request-ID": request_id}) as client:
        await client.send("hello")
        assert await client.recv() == "hello"
        assert tunnel_metrics(await setup.metrics())[:2] == (1, 1)
        assert [r for r in setup.access_lines() if r.get("request_id") == request_id] == []  # not before it ends
        await client.close(4000, "bye")
    await wait_session(setup.app, sid)
    await setup.no_tunnels_left()
    open_now, upgraded, bytes_in, bytes_out = tunnel_metrics(await setup.metrics())
    assert (open_now, upgraded) == (0, 1)
    lines = [r for r in setup.access_lines() if r.get("request_id") == request_id]
    assert len(lines) == 1, lines
    line = lines[0]
    assert (line["status"], line["method"], line["path"]) == (101, "GET", "/ws")
    # aiohttp's client sends no extension: its frames are exactly text "hello" and Close(4000, "bye").
    assert line["bytes_in"] == masked_frame_size(5) + masked_frame_size(2 + 3) == bytes_in
    assert line["bytes_out"] == bytes_out and line["bytes_out"] >= 2 + 5 + 2  # the echo and the app's Close
    assert line["closed_by"] == "client"


async def test_an_idle_tunnel_is_closed_after_upgrade_idle_timeout(app_server: TestServer) -> None:
    url = f"http://127.0.0.1:{app_server.port}"
    async with running(url, app_server, upgrade_idle_timeout_s=1.0) as idle:
        sid = session_id()
        async with connect("websockets", idle.url(f"/ws/push?id={sid}&after_s=3"), {"X-Request-ID": f"idle-{sid}"}) as client:
            started = time.monotonic()
            ended = await client.connection_ended()
            assert 1.0 <= time.monotonic() - started < 2.5, ended
        await idle.no_tunnels_left()
        lines = [r for r in idle.access_lines() if r.get("request_id") == f"idle-{sid}"]
        assert [(r["status"], r["closed_by"]) for r in lines] == [(101, "idle")]


# --------------------------------------------------------------------------- one side fails mid-tunnel
async def test_a_client_gone_without_a_close_frame_ends_the_apps_connection(setup: Setup) -> None:
    sid = session_id()
    async with connect("websockets", setup.url(f"/ws?id={sid}"), {"X-Request-ID": f"gone-{sid}"}) as client:
        await client.send("before")
        assert await client.recv() == "before"
        client.ws.transport.abort()
    session = await wait_session(setup.app, sid)
    assert session.close_code is None  # no Close frame came: the connection just ended
    await setup.no_tunnels_left()
    lines = [r for r in setup.access_lines() if r.get("request_id") == f"gone-{sid}"]
    assert [(r["status"], r["closed_by"]) for r in lines] == [(101, "client")]


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "fin"])
@pytest.mark.parametrize("kind", CLIENTS)
async def test_the_app_side_ending_mid_tunnel_ends_the_clients_and_nothing_leaks(
    app_server: TestServer, kind: str, reset: bool
) -> None:
    with FaultProxy("127.0.0.1", app_server.port) as fault:
        async with running(fault.url, app_server) as through:
            sid = session_id()
            async with connect(kind, through.url(f"/ws?id={sid}"), {"X-Request-ID": f"cut-{sid}"}) as client:
                await client.send("before")
                assert await client.recv() == "before"
                assert len(through.tunnels) == 1
                await asyncio.to_thread(fault.cut_links, reset=reset)
                await client.connection_ended()
            await through.no_tunnels_left()
            assert through.agent.listener.ctx.in_flight == 0
            assert tunnel_metrics(await through.metrics())[:2] == (0, 1)
            lines = [r for r in through.access_lines() if r.get("request_id") == f"cut-{sid}"]
            assert [(r["status"], r["closed_by"]) for r in lines] == [(101, "upstream")]
            # The agent keeps serving: HTTP and a new tunnel, through the same fault proxy.
            async with through.agent.main.get(f"/sessions/{sid}") as response:
                assert response.status == 200
            async with connect(kind, through.url(f"/ws?id={session_id()}")) as again:
                await again.send("after")
                assert await again.recv() == "after"
            await through.no_tunnels_left()
