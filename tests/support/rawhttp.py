"""Raw HTTP/1.1 over a fresh TCP connection: request bytes exactly as written, and everything the
agent sends back on that connection (``raw_exchange``), read with the strict reader of
``tests.support.responses``."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support.responses import IncompleteResponse, RawResponse, parse_responses


@dataclass
class Exchange:
    """What one raw connection got back: all bytes, whether the agent closed it, and how."""

    data: bytes
    closed: bool  # the agent closed (EOF or reset) before our read deadline
    reset: bool = False
    elapsed_s: float = 0.0
    head_for: list[bool] = field(default_factory=list)

    def responses(self) -> list[RawResponse]:
        return parse_responses(self.data, eof=self.closed, head_for=self.head_for)

    def response(self) -> RawResponse:
        responses = [r for r in self.responses() if r.status >= 200]
        assert len(responses) == 1, f"expected one final response, got {len(responses)}: {self.data[:500]!r}"
        return responses[0]


async def raw_exchange(
    port: int,
    data: bytes | list[bytes],
    *,
    timeout_s: float = 5.0,
    until_responses: int | None = None,
    head_for: list[bool] | None = None,
    gap_s: float = 0.0,
) -> Exchange:
    """Send ``data`` (pieces ``gap_s`` apart) on a fresh connection and read until the agent closes,
    ``timeout_s`` passes, or (``until_responses``) that many complete final responses arrived."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pieces = [data] if isinstance(data, bytes) else data
    received = bytearray()
    closed = reset = False
    try:
        for i, piece in enumerate(pieces):
            if i and gap_s:
                await asyncio.sleep(gap_s)
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                break
        deadline = started + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if until_responses is not None:
                try:
                    done = [
                        r
                        for r in parse_responses(bytes(received), eof=False, head_for=head_for)
                        if r.status >= 200 and r.complete
                    ]
                    if len(done) >= until_responses:
                        break
                except (IncompleteResponse, ValueError, AssertionError):
                    pass
            try:
                chunk = await asyncio.wait_for(reader.read(65536), remaining)
            except TimeoutError:
                break
            except ConnectionError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return Exchange(bytes(received), closed, reset, time.monotonic() - started, head_for or [])


def request(
    method: str,
    path: str,
    *,
    host: str = "test.local",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
) -> bytes:
    """A request head (UTF-8 encoded, exactly as given) plus ``body``; Content-Length added for a
    body unless a framing header is given."""
    lines = [f"{method} {path} {version}"]
    if host:
        lines.append(f"Host: {host}")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


async def get(port: int, path: str, **kwargs: Any) -> RawResponse:
    timeout = kwargs.pop("timeout", 5.0)
    method = kwargs.pop("method", "GET")
    ex = await raw_exchange(
        port, request(method, path, **kwargs), timeout_s=timeout, until_responses=1, head_for=[method == "HEAD"]
    )
    return ex.response()


def chunked(data: bytes, size: int = 65536) -> bytes:
    """``data`` as a chunked body, terminating chunk included."""
    out = bytearray()
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return bytes(out) + b"0\r\n\r\n"


def new_request_id() -> str:
    return f"test-{uuid.uuid4()}"
