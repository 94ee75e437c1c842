"""A WebSocket echo server for the benchmark: ``python -m bench.websocket.echo --port N``.

Every data frame comes back as one unmasked frame with the same opcode and payload; a ping gets
its pong, a Close is answered and the connection ends. A request without ``Upgrade: websocket``
(the agent's health check, the benchmark's start-up probe) gets ``200 ok`` and
``Connection: close``. One process, one thread, uvloop when installed; it stops on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from bench.websocket.frames import OP_CLOSE, OP_PING, OP_PONG, accept_value, apply_mask, frame, parse_header

MAX_HEAD_BYTES = 16 * 1024
PLAIN_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def switching_protocols(key: bytes) -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_value(key) + b"\r\n\r\n"
    )


def websocket_key(head: bytes) -> bytes | None:
    """The ``Sec-WebSocket-Key`` of an upgrade request head, None for any other request."""
    key = None
    upgrade = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"upgrade":
            upgrade = value.strip().lower() == b"websocket"
        elif name == b"sec-websocket-key":
            key = value.strip()
    return key if upgrade else None


class EchoConnection(asyncio.Protocol):
    __slots__ = ("buf", "transport", "upgraded")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            buf = self._head(buf)
        if self.upgraded and buf:
            buf = self._frames(buf)
        self.buf = buf

    def _head(self, buf: bytes) -> bytes:
        transport = self.transport
        assert transport is not None
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                transport.write(BAD_REQUEST)
                transport.close()
                return b""
            return buf
        key = websocket_key(buf[:end])
        if key is None:
            transport.write(PLAIN_OK)
            transport.close()
            return b""
        transport.write(switching_protocols(key))
        self.upgraded = True
        return buf[end + 4 :]

    def _frames(self, buf: bytes) -> bytes:
        transport = self.transport
        assert transport is not None
        pos = 0
        end = len(buf)
        while pos < end:
            header = parse_header(buf, pos)
            if header is None:
                break
            start = pos + header.header_bytes
            stop = start + header.payload_bytes
            if stop > end:
                break
            payload = buf[start:stop]
            if header.mask_key is not None:
                payload = apply_mask(payload, header.mask_key)
            pos = stop
            if header.opcode == OP_CLOSE:
                transport.write(frame(payload[:2], opcode=OP_CLOSE))
                transport.close()
                return b""
            transport.write(frame(payload, opcode=OP_PONG if header.opcode == OP_PING else header.opcode))
        return buf[pos:] if pos else buf

    def eof_received(self) -> bool:
        return False  # close our side too


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(EchoConnection, "127.0.0.1", port, backlog=1024)
    async with server:
        await stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.websocket.echo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
