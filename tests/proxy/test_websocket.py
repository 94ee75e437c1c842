"""WebSocket and Upgrade passthrough on the real main listener, in-process, against real servers.

The app is either a real aiohttp WebSocket server or a raw asyncio server that speaks exactly the
bytes a case needs (a 101 then an echo, a reset mid-handshake, a half-close). Clients are raw
sockets, so every byte on the wire is the test's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from agent.config import build_config
from tests.support.inprocess import InProcessAgent, in_process_agent

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def handshake(path: str = "/ws", extra: str = "", upgrade: str = "websocket", method: str = "GET") -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16))
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key.decode()}\r\nX-Request-ID: ws-req-1\r\n{extra}\r\n"
    ).encode()
    return request, base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(payload: bytes, opcode: int = 0x2, *, masked: bool = True) -> bytes:
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, (0x80 if masked else 0) | length])
    elif length < 65536:
        header = bytes([0x80 | opcode, (0x80 if masked else 0) | 126]) + struct.pack("!H", length)
    else:
        header = bytes([0x80 | opcode, (0x80 if masked else 0) | 127]) + struct.pack("!Q", length)
    if not masked:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    key = await reader.readexactly(4) if second & 0x80 else b""
    payload = await reader.readexactly(length)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, payload


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, list[str]]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            fields.setdefault(name.strip().lower(), []).append(value.strip())
    return int(lines[0].split()[1]), fields


class RawApp:
    """A raw upstream: records request heads; ``handler`` does the rest."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def switch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, heads: list[bytes]) -> None:
    """Read an upgrade request and answer 101 the way RFC 6455 §4.2.2 says."""
    head = await reader.readuntil(b"\r\n\r\n")
    heads.append(head)
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: %s\r\n\r\n"
        % accept
    )


def agent_config(upstream_url: str, **proxy: Any) -> Any:
    return build_config(
        {
            "upstream": {"url": upstream_url, "read_timeout_s": 1.0},
            "proxy": {"header_timeout_s": 0.5, "keepalive_timeout_s": 0.5, **proxy},
            "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
        },
        {},
        "test",
    )


@pytest.fixture
async def echo_app() -> AsyncIterator[RawApp]:
    app = RawApp(lambda r, w: None)  # type: ignore[arg-type, return-value]

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await switch(reader, writer, app.heads)
        while data := await reader.read(65536):
            writer.write(data)  # the client's frames come back as they are
            await writer.drain()

    app.handler = echo
    yield app
    await app.stop()


def main_port(agent: InProcessAgent) -> int:
    return int(agent.main_url.rsplit(":", 1)[1])


async def connect(agent: InProcessAgent) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", main_port(agent))


async def test_tunnel_relays_pipelined_bytes_and_ignores_http_deadlines(echo_app: RawApp) -> None:
    url = await echo_app.start()
    async with in_process_agent(agent_config(url)) as agent:
        reader, writer = await connect(agent)
        request, accept = handshake()
        writer.write(request + frame(b"sent with the handshake"))  # pipelined: belongs to the tunnel
        status, fields = await read_head(reader)
        assert status == 101 and fields["sec-websocket-accept"] == [accept.decode()]
        assert fields["x-request-id"] == ["ws-req-1"] and fields["upgrade"] == ["websocket"]
        assert await asyncio.wait_for(read_frame(reader), 5) == (0x2, b"sent with the handshake")
        await asyncio.sleep(1.2)  # past header_timeout_s and keepalive_timeout_s: they no longer apply
        writer.write(frame(b"after idle"))
        assert await asyncio.wait_for(read_frame(reader), 5) == (0x2, b"after idle")
        forwarded = echo_app.heads[0].decode().lower()
        assert "connection: upgrade" in forwarded and "upgrade: websocket" in forwarded
        assert "x-request-id: ws-req-1" in forwarded and "traceparent: 00-" in forwarded and "sec-websocket-key" in forwarded
        ctx = agent.listener.ctx
        assert len(ctx.tunnels) == 1 and ctx.in_flight == 0
        assert agent.http_metrics.tunnel_snapshot()[0] == 1
        history = await (await agent.admin.get("/health/history")).json()
        assert history["readiness"]["tunnels_open"] == 1  # what /status shows
        writer.close()
        for _ in range(100):
            if not ctx.tunnels:
                break
            await asyncio.sleep(0.02)
        assert not ctx.tunnels and agent.http_metrics.tunnel_snapshot()[0] == 0
        assert ctx.pool.size == 0, "the tunnel's upstream connection must never go back to the pool"


async def test_other_answers_keep_the_connection_http() -> None:
    app = RawApp(lambda r, w: None)  # type: ignore[arg-type, return-value]

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            app.heads.append(head)
            body = b'{"detail":"no websockets here"}'
            status = b"403 Forbidden" if b"upgrade: websocket" in head.lower() else b"200 OK"
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
            )

    app.handler = refuse
    url = await app.start()
    async with in_process_agent(agent_config(url)) as agent:
        reader, writer = await connect(agent)
        request, _ = handshake()
        writer.write(request + b"GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n")  # pipelined plain request
        status, fields = await read_head(reader)
        assert status == 403 and "connection" not in fields
        doc = orjson.loads(await reader.readexactly(int(fields["content-length"][0])))
        assert doc["error_code"] == "FORBIDDEN" and doc["request_id"] == "ws-req-1"
        status, fields = await read_head(reader)
        assert status == 200  # the bytes after the upgrade request were parsed as HTTP
        await reader.readexactly(int(fields["content-length"][0]))
        writer.close()
        assert agent.http_metrics.tunnel_snapshot()[1] == {101: 0, 403: 1}
    await app.stop()


async def test_h2c_is_not_tunnelled() -> None:
    app = RawApp(lambda r, w: None)  # type: ignore[arg-type, return-value]

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        app.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await reader.read()

    app.handler = plain
    url = await app.start()
    async with in_process_agent(agent_config(url)) as agent:
        reader, writer = await connect(agent)
        upgrade = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n" + upgrade + b"\r\n")
        status, fields = await read_head(reader)
        assert status == 200 and fields["connection"] == ["close"]
        assert await reader.readexactly(2) == b"ok"
        forwarded = app.heads[0].lower()
        assert b"upgrade" not in forwarded and b"http2-settings" not in forwarded
        writer.close()
    await app.stop()


async def test_over_max_upgraded_is_overloaded(echo_app: RawApp) -> None:
    url = await echo_app.start()
    async with in_process_agent(agent_config(url, max_upgraded=1, max_in_flight=1)) as agent:
        first_reader, first_writer = await connect(agent)
        request, _ = handshake()
        first_writer.write(request)
        assert (await read_head(first_reader))[0] == 101
        reader, writer = await connect(agent)
        writer.write(handshake()[0])
        status, fields = await read_head(reader)
        assert status == 503 and fields["retry-after"] == ["1"]
        assert orjson.loads(await reader.readexactly(int(fields["content-length"][0])))["error_code"] == "OVERLOADED"
        async with agent.main.get("/health/live") as response:  # tunnels do not count against max_in_flight
            assert response.status == 200
        first_writer.close()
        writer.close()


async def test_idle_tunnel_is_closed(echo_app: RawApp, caplog: pytest.LogCaptureFixture) -> None:
    url = await echo_app.start()
    async with in_process_agent(agent_config(url, upgrade_idle_timeout_s=0.6)) as agent:
        caplog.set_level("INFO", logger="agent.access")
        agent.listener.ctx.access_log.direct = False  # through logging, where caplog sees it
        agent.listener.ctx.access_log.enabled = True
        reader, writer = await connect(agent)
        writer.write(handshake()[0])
        assert (await read_head(reader))[0] == 101
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert 0.5 < asyncio.get_running_loop().time() - started < 2.5
        writer.close()
        line = next(r for r in caplog.records if r.name == "agent.access" and getattr(r, "status", None) == 101)
        assert line.closed_by == "idle" and line.request_id == "ws-req-1"  # type: ignore[attr-defined]
        assert line.bytes_in == 0 and line.bytes_out == 0  # type: ignore[attr-defined]


async def test_half_close_is_passed_on() -> None:
    app = RawApp(lambda r, w: None)  # type: ignore[arg-type, return-value]
    seen_eof = asyncio.Event()

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await switch(reader, writer, app.heads)
        received = await reader.read()  # until the client's FIN arrives through the agent
        seen_eof.set()
        writer.write(b"still talking after your FIN:" + received)
        await writer.drain()
        writer.write_eof()

    app.handler = half
    url = await app.start()
    async with in_process_agent(agent_config(url)) as agent:
        reader, writer = await connect(agent)
        writer.write(handshake()[0])
        assert (await read_head(reader))[0] == 101
        writer.write(b"last words")
        writer.write_eof()
        await asyncio.wait_for(seen_eof.wait(), 5)
        assert await asyncio.wait_for(reader.read(), 5) == b"still talking after your FIN:last words"
        writer.close()
        for _ in range(100):
            if not agent.listener.ctx.tunnels:
                break
            await asyncio.sleep(0.02)
        assert not agent.listener.ctx.tunnels
    await app.stop()


async def test_upstream_reset_mid_handshake_is_a_502_and_the_agent_goes_on() -> None:
    app = RawApp(lambda r, w: None)  # type: ignore[arg-type, return-value]

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    app.handler = reset
    url = await app.start()
    async with in_process_agent(agent_config(url)) as agent:
        reader, writer = await connect(agent)
        writer.write(handshake()[0])
        status, fields = await read_head(reader)
        assert status == 502
        assert orjson.loads(await reader.readexactly(int(fields["content-length"][0])))["error_code"] == "UPSTREAM_UNAVAILABLE"
        writer.close()
        assert agent.listener.ctx.in_flight == 0 and not agent.listener.ctx.tunnels
    await app.stop()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (handshake(extra="Content-Length: 5\r\n")[0] + b"hello", 400),
        (handshake(method="POST")[0], 400),
        (handshake(extra="Transfer-Encoding: chunked\r\n")[0] + b"0\r\n\r\n", 400),
    ],
    ids=["body", "post", "chunked"],
)
async def test_bad_upgrade_requests_are_refused(echo_app: RawApp, request_bytes: bytes, status: int) -> None:
    url = await echo_app.start()
    async with in_process_agent(agent_config(url)) as agent:
        reader, writer = await connect(agent)
        writer.write(request_bytes)
        assert (await read_head(reader))[0] == status
        writer.close()
        assert echo_app.heads == [], "a refused upgrade never reaches the app"


async def test_drain_sends_going_away_to_both_sides() -> None:
    received: list[int] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket_ = web.WebSocketResponse(autoclose=True)
        await socket_.prepare(request)
        async for message in socket_:
            await socket_.send_bytes(message.data)
        received.append(socket_.close_code or 0)
        return socket_

    upstream = web.Application()
    upstream.router.add_get("/ws", ws)
    runner = web.AppRunner(upstream)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with in_process_agent(agent_config(url)) as agent:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{agent.main_url}/ws") as client:
            await client.send_bytes(b"x" * 100_000)  # a frame in flight while the drain begins
            closing = asyncio.ensure_future(agent.listener.close(5.0))
            got = await asyncio.wait_for(client.receive(), 5)
            while got.type == aiohttp.WSMsgType.BINARY:
                got = await asyncio.wait_for(client.receive(), 5)
            assert got.type == aiohttp.WSMsgType.CLOSE and got.data == 1001
            await asyncio.wait_for(closing, 6)
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.02)
        assert received == [1001]
        assert not agent.listener.ctx.tunnels
    await runner.cleanup()
