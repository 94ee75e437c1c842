"""HTTP/1.1 on raw asyncio streams, as the load clients need it: read one response, name a failure.

Raw streams rather than an HTTP client library: the clients must see exactly which connection a
request went on, reconnect only when told ``Connection: close``, and tell a refused connect from
a reset or an early EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

HOST = "127.0.0.1"

# RuntimeError: uvloop refuses to write on a transport already closed (e.g. reset by the peer).
NET_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError, IndexError, RuntimeError)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status, lower-cased headers, body) of one response: Content-Length, chunked, or to EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = await _read_chunked(reader)
    elif status in (204, 304):
        body = b""
    else:
        body = await reader.read()
    return status, headers, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def is_close(headers: dict[bytes, bytes]) -> bool:
    return headers.get(b"connection", b"").lower() == b"close"


def classify(exc: BaseException) -> str:
    """A short name for a failed request, as the figures count them."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "eof before full response"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, BrokenPipeError):
        return "broken pipe"
    if isinstance(exc, RuntimeError):
        return "closed before the request was written"
    return type(exc).__name__


def close_quietly(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()


async def status_on_new_connection(port: int, request: bytes, timeout_s: float) -> int | str:
    """Send ``request`` on a connection of its own; the response's status, or ``classify()``'s name."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout_s)
        writer.write(request)
        return (await asyncio.wait_for(read_response(reader), timeout_s))[0]
    except NET_ERRORS as exc:
        return classify(exc)
    finally:
        close_quietly(writer)


def status_of(data: bytes) -> int | None:
    """The status of the response at the start of ``data``, if there is one."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None
