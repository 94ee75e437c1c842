"""Helpers for the proxy tests: raw HTTP/1.1 over sockets, a strict response reader, the
agent's JSON log lines, and a tiny raw upstream server that misbehaves on purpose.

Everything talks real TCP to the real agent subprocess; nothing is mocked. The response reader
is written here (not httptools) so the tests do not share a parser with the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import AgentProcess

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# The default security headers (agent/config.py DEFAULT_SECURITY_HEADERS), names only.
SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "permissions-policy",
    "x-permitted-cross-domain-policies",
    "x-dns-prefetch-control",
)


def proxy_config(upstream_url: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """An agent config for proxy tests: no background checks (nothing but the test talks to the
    upstream, so its request counter is exact), a short drain, extra sections merged in."""
    config: dict[str, Any] = {
        "server": {"drain_delay_s": 0.1, "shutdown_timeout_s": 2.0},
        "upstream": {"url": upstream_url},
        "health": {"interval_s": 0.5, "timeout_s": 0.5},
        "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def start_agent(tmp_path_factory: pytest.TempPathFactory, name: str, config: dict[str, Any]) -> AgentProcess:
    agent = AgentProcess(tmp_path_factory.mktemp(name), config)
    return agent.start()


# --------------------------------------------------------------------------- responses
@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool = True  # False: the connection ended before the framing said the body ended
    chunked: bool = False

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for n, v in self.headers if n.lower() == lower]

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


class IncompleteResponse(Exception):
    pass


def parse_head(data: bytes) -> tuple[int, str, str, list[tuple[str, str]], int] | None:
    """(status, reason, version, headers, bytes used), or None when the head is not complete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep, f"malformed response header line {line!r}"
        assert name == name.strip() and name, f"bad header name {name!r}"
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return int(code), reason.decode("latin-1"), version.decode(), headers, end + 4


def parse_responses(data: bytes, *, eof: bool, head_for: list[bool] | None = None) -> list[RawResponse]:
    """Every response in ``data`` (a whole connection's bytes). ``head_for[i]`` marks responses
    to HEAD requests (no body whatever the headers say); 1xx responses are returned too."""
    responses: list[RawResponse] = []
    pos = 0
    final_index = 0
    while pos < len(data):
        parsed = parse_head(data[pos:])
        if parsed is None:
            raise IncompleteResponse(f"incomplete head: {data[pos : pos + 200]!r}")
        status, reason, version, headers, used = parsed
        pos += used
        lower = {n.lower(): v for n, v in headers}
        if 100 <= status < 200:
            responses.append(RawResponse(status, reason, version, headers, b""))
            continue
        is_head = bool(head_for and final_index < len(head_for) and head_for[final_index])
        final_index += 1
        if is_head or status in (204, 304):
            responses.append(RawResponse(status, reason, version, headers, b""))
            continue
        if "chunked" in lower.get("transfer-encoding", "").lower():
            body = bytearray()
            complete = False
            while True:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    break
                size_text = data[pos:line_end].split(b";")[0]
                size = int(size_text, 16)
                if size == 0:
                    trailer_end = data.find(b"\r\n\r\n", line_end)
                    if trailer_end >= 0 or data[line_end : line_end + 4] == b"\r\n\r\n":
                        pos = (trailer_end if trailer_end >= 0 else line_end) + 4
                        complete = True
                    else:
                        pos = len(data)
                    break
                start = line_end + 2
                if start + size + 2 > len(data):
                    body += data[start : start + size]
                    pos = len(data)
                    break
                body += data[start : start + size]
                assert data[start + size : start + size + 2] == b"\r\n", "bad chunk framing"
                pos = start + size + 2
            responses.append(RawResponse(status, reason, version, headers, bytes(body), complete, chunked=True))
            if not complete:
                break
        elif "content-length" in lower:
            length = int(lower["content-length"])
            body_bytes = data[pos : pos + length]
            pos += len(body_bytes)
            responses.append(RawResponse(status, reason, version, headers, body_bytes, len(body_bytes) == length))
            if len(body_bytes) < length:
                break
        else:  # close-delimited
            responses.append(RawResponse(status, reason, version, headers, data[pos:], eof))
            pos = len(data)
    return responses


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


# --------------------------------------------------------------------------- logs
def log_lines(stdout_path: Path) -> list[dict[str, Any]]:
    """The agent's stdout as JSON objects, split on ``\\n`` only (what a log shipper does)."""
    data = stdout_path.read_bytes() if stdout_path.exists() else b""
    records = []
    for raw in data.split(b"\n"):
        if raw.strip():
            records.append(json.loads(raw))
    return records


def wait_for_log(stdout_path: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 3.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in log_lines(stdout_path) if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def chunked(data: bytes, size: int = 65536) -> bytes:
    """``data`` as a chunked body, terminating chunk included."""
    out = bytearray()
    for i in range(0, len(data), size):
        piece = data[i : i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return bytes(out) + b"0\r\n\r\n"


def new_request_id() -> str:
    return f"test-{uuid.uuid4()}"


# --------------------------------------------------------------------------- raw upstream
Handler = Callable[["RawConnection", "RawRequest"], Awaitable[bool]]


@dataclass
class RawRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class RawConnection:
    def __init__(self, server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.id = next(server._ids)
        self.requests = 0
        self.armed = False  # set by a handler: the next request on this connection is dropped unanswered

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


class RawUpstream:
    """A raw asyncio HTTP/1.1 server in its own thread; ``routes[path](conn, req)`` answers and
    returns True to keep the connection for another request. Records what it saw."""

    def __init__(self) -> None:
        import itertools

        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[int, RawRequest]] = []  # (connection id, request)
        self.connections_opened = 0
        self.connections_closed: list[tuple[int, str]] = []  # (connection id, "eof" | "reset")
        self.events: list[str] = []
        self._ids = itertools.count(1)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-upstream", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RawUpstream:
        self._thread.start()
        self._ready.wait(5)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()
            self._stop = asyncio.Event()
            await self._stop.wait()
            self._server.close()
            await self._server.wait_closed()

        self.loop.run_until_complete(main())
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5)

    def requests_to(self, path: str) -> list[tuple[int, RawRequest]]:
        return [(c, r) for c, r in self.requests if r.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_opened += 1
        conn = RawConnection(self, reader, writer)
        how = "eof"
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                lines = head[:-4].decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
                req = RawRequest(method, path, headers, b"")  # type: ignore[arg-type]
                length = req.header("Content-Length")
                if length is not None:
                    req.body = await reader.readexactly(int(length))
                elif "chunked" in (req.header("Transfer-Encoding") or ""):
                    body = bytearray()
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            await reader.readuntil(b"\r\n")
                            break
                        body += await reader.readexactly(size + 2)
                        del body[-2:]
                    req.body = bytes(body)
                conn.requests += 1
                self.requests.append((conn.id, req))
                if conn.armed:  # like an app closing an idle keep-alive connection as a request arrives
                    self.events.append(f"dropped {req.method} {req.path}")
                    break
                handler = self.routes.get(path.split("?")[0], _ok)
                if not await handler(conn, req):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            how = "reset"
        finally:
            self.connections_closed.append((conn.id, how))
            if not writer.is_closing():
                writer.close()


async def _ok(conn: RawConnection, req: RawRequest) -> bool:
    body = b'{"ok": true}'
    await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return True


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


async def async_wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
