"""WebSocket echo round trips: ``python -m bench.websocket.client ws://127.0.0.1:N/ws/echo``.

``--connections`` WebSocket connections, each a closed loop: send one binary message of
``--message-bytes``, wait for its echo, send the next, for ``--seconds``. Each connection sends
one precomputed masked frame (a random payload and mask key per connection, the same on every
send): the proxies under test never unmask, so a fresh key per frame would only cost this client
CPU. Every echo is compared with the expected frame byte for byte; a mismatch or a lost
connection is an error. Prints one JSON line: round trips completed, the window, round trips/s,
p50/p99 of the round-trip time, errors, and this process's CPU seconds during the window.

``check()`` is the benchmark's pre-check of one endpoint (handshake, echoes of random messages
with a fresh mask each, ping, close handshake), run in the benchmark's own process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from urllib.parse import urlsplit

from bench.websocket.frames import OP_CLOSE, OP_PING, OP_PONG, accept_value, frame, handshake_request, new_key, parse_header

CONNECT_TIMEOUT_S = 10.0
CLOSE_WAIT_S = 2.0
NORMAL_CLOSURE = struct.pack("!H", 1000)


class Window:
    """What all connections of one run share: the deadline and the tallies."""

    __slots__ = ("deadline", "errors", "latencies_s")

    def __init__(self) -> None:
        self.deadline = 0.0
        self.errors = 0
        self.latencies_s: list[float] = []


class RoundTrips(asyncio.Protocol):
    """One connection: the handshake, then send, await the echo, send again until the deadline."""

    __slots__ = (
        "closed",
        "got",
        "handshake",
        "head",
        "key",
        "message",
        "parts",
        "reply",
        "request",
        "sent_at",
        "stopped",
        "transport",
        "window",
    )

    def __init__(self, window: Window, request: bytes, key: bytes, message: bytes, reply: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.window = window
        self.request = request
        self.key = key
        self.message = message
        self.reply = reply
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.stopped: asyncio.Future[None] = loop.create_future()  # this connection's last round trip is done
        self.closed: asyncio.Future[None] = loop.create_future()
        self.head = b""
        self.parts: list[bytes] = []
        self.got = 0
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def start(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        if not self.handshake.done():
            self._head(data)
            return
        self.got += len(data)
        self.parts.append(data)
        if self.got < len(self.reply):
            return
        now = time.perf_counter()
        window = self.window
        parts = self.parts
        ok = (parts[0] if len(parts) == 1 else b"".join(parts)) == self.reply
        parts.clear()
        self.got = 0
        if ok:
            window.latencies_s.append(now - self.sent_at)
        else:
            window.errors += 1
        if ok and now < window.deadline:
            self.sent_at = now
            self.transport.write(self.message)  # type: ignore[union-attr]
        elif not self.stopped.done():
            self.stopped.set_result(None)

    def _head(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self.head[:end].split(b"\r\n")
        accept = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if not lines[0].startswith(b"HTTP/1.1 101") or accept != accept_value(self.key) or self.head[end + 4 :]:
            self.handshake.set_exception(ConnectionError(f"bad handshake answer: {self.head[:300]!r}"))
        else:
            self.handshake.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))
        if not self.stopped.done():
            self.window.errors += 1
            self.stopped.set_result(None)
        self.closed.set_result(None)


async def run(host: str, port: int, path: str, connections: int, seconds: float, message_bytes: int) -> dict[str, float | int]:
    loop = asyncio.get_running_loop()
    window = Window()
    ends = []
    for _ in range(connections):
        key, mask_key, payload = new_key(), os.urandom(4), os.urandom(message_bytes)
        request = handshake_request(key, path, f"{host}:{port}")
        end = RoundTrips(window, request, key, frame(payload, mask_key=mask_key), frame(payload))
        ends.append(end)
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        await asyncio.gather(*(loop.create_connection(lambda e=end: e, host, port) for end in ends))
        await asyncio.gather(*(end.handshake for end in ends))
    cpu_start = time.process_time()
    started = time.perf_counter()
    window.deadline = started + seconds
    for end in ends:
        end.start()
    try:
        async with asyncio.timeout(seconds + CONNECT_TIMEOUT_S):
            await asyncio.gather(*(end.stopped for end in ends))
    except TimeoutError:
        window.errors += sum(not end.stopped.done() for end in ends)  # an echo that never came back
    duration_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_start
    for end in ends:
        if end.transport is not None and not end.transport.is_closing():
            end.transport.write(frame(NORMAL_CLOSURE, opcode=OP_CLOSE, mask_key=os.urandom(4)))
            end.transport.close()
    await asyncio.wait([end.closed for end in ends], timeout=CLOSE_WAIT_S)
    latencies = sorted(window.latencies_s)

    def pct_ms(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    done = len(latencies)
    return {
        "requests": done,
        "duration_s": duration_s,
        "rps": done / duration_s,
        "p50_ms": pct_ms(0.50),
        "p99_ms": pct_ms(0.99),
        "errors": window.errors,
        "client_cpu_s": cpu_s,
    }


# ------------------------------------------------------------------------ pre-check
async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of one unmasked frame from a server."""
    buf = await reader.readexactly(2)
    extra = {126: 2, 127: 8}.get(buf[1] & 0x7F, 0)
    buf += await reader.readexactly(extra)
    header = parse_header(buf)
    assert header is not None
    if header.mask_key is not None or not header.fin:
        raise ValueError(f"server frame masked or not final: {buf!r}")
    return header.opcode, await reader.readexactly(header.payload_bytes)


async def check(host: str, port: int, path: str, sizes: tuple[int, ...], messages: int) -> dict[str, str]:
    """Handshake, ``messages`` echoes per size, a ping and the close handshake; the 101's headers.

    Raises ValueError (or a connection error) naming the first thing that was wrong."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        key = new_key()
        writer.write(handshake_request(key, path, f"{host}:{port}"))
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head[1:] if line)}
        if not head[0].startswith("HTTP/1.1 101"):
            raise ValueError(f"handshake answered {head[0]!r}")
        if headers.get("sec-websocket-accept", "").encode() != accept_value(key):
            raise ValueError(f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r} does not match the key")
        for size in sizes:
            for i in range(messages):
                payload = os.urandom(size)
                writer.write(frame(payload, mask_key=os.urandom(4)))
                opcode, echoed = await read_frame(reader)
                if (opcode, echoed) != (0x2, payload):
                    raise ValueError(f"message {i} of {size} B: echo differs (opcode {opcode}, {len(echoed)} B)")
        writer.write(frame(b"bench", opcode=OP_PING, mask_key=os.urandom(4)))
        if await read_frame(reader) != (OP_PONG, b"bench"):
            raise ValueError("ping not answered with its pong")
        writer.write(frame(NORMAL_CLOSURE, opcode=OP_CLOSE, mask_key=os.urandom(4)))
        if (await read_frame(reader))[0] != OP_CLOSE:
            raise ValueError("Close not answered with a Close")
        if await reader.read(1) != b"":
            raise ValueError("bytes after the Close")
        return headers
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.websocket.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="ws://127.0.0.1:PORT/PATH")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--message-bytes", type=int, default=64)
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(
            run(url.hostname or "127.0.0.1", url.port or 80, url.path or "/", args.connections, args.seconds, args.message_bytes)
        )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
