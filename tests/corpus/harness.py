"""The agent's main listener in-process, in a thread, in front of a recording upstream.

Used by the corpus replay (``tests/reliability/test_corpus.py``), the header and id fuzzers and
``fuzz/request_path.py`` (``FakeTransport``, ``parse_upstream_request``). The listener and the
upstream share one event loop in a background thread, so the tests themselves are plain
synchronous code talking raw TCP, and ``AgentThread.call`` runs a function on the loop (a
barrier: everything the loop had queued before has run).

The upstream is a raw asyncio server with its own small HTTP/1.1 request parser (not httptools,
so the tests do not share a parser with the code under test). It counts every byte it receives,
records every complete request (head fields exactly as sent, body de-chunked) and every
connection that ended with a partial request, and answers each request with
``200`` and the body ``upstream:<request-target>``.
"""

from __future__ import annotations

import asyncio
import itertools
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.config import AgentConfig, build_config
from agent.proxy.listener import ClientConnection
from tests.support.inprocess import in_process_agent

T = TypeVar("T")

ECHO_PREFIX = b"upstream:"


# --------------------------------------------------------------------------- recording upstream
@dataclass
class UpstreamRequest:
    connection: int
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw_head: bytes

    def all(self, name: bytes) -> list[bytes]:
        lower = name.lower()
        return [v for n, v in self.headers if n.lower() == lower]

    def names(self) -> list[bytes]:
        return [n.lower() for n, _ in self.headers]


class UpstreamFramingError(Exception):
    """The agent sent the upstream something that is not a valid request."""


def parse_upstream_request(buffer: bytes | bytearray) -> tuple[UpstreamRequest, int] | None:
    """One request from the start of ``buffer`` and the bytes it used; None when incomplete.

    Strict on purpose: the agent must only ever emit clean requests (CRLF line ends, one framing
    header at most, hex chunk sizes, no trailers), so anything else raises UpstreamFramingError.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end])
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise UpstreamFramingError(f"bad request line {lines[0][:200]!r}")
    method, target, version = parts
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b"\n" in line or b"\r" in line:
            raise UpstreamFramingError(f"bad header line {line[:200]!r}")
        headers.append((name, value.strip(b" \t")))
    lowers = [n.lower() for n, _ in headers]
    pos = end + 4
    if lowers.count(b"content-length") + lowers.count(b"transfer-encoding") > 1:
        raise UpstreamFramingError(f"ambiguous framing: {head[:300]!r}")
    te = [v for n, v in headers if n.lower() == b"transfer-encoding"]
    cl = [v for n, v in headers if n.lower() == b"content-length"]
    body = bytearray()
    if te:
        if te[0] != b"chunked":
            raise UpstreamFramingError(f"transfer-encoding {te[0]!r}")
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size_text = bytes(buffer[pos:line_end])
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise UpstreamFramingError(f"bad chunk size line {size_text[:100]!r}")
            size = int(size_text, 16)
            start = line_end + 2
            if size == 0:
                if len(buffer) < start + 2:
                    return None
                if buffer[start : start + 2] != b"\r\n":
                    raise UpstreamFramingError("trailer section or junk after the last chunk")
                pos = start + 2
                break
            if len(buffer) < start + size + 2:
                return None
            if buffer[start + size : start + size + 2] != b"\r\n":
                raise UpstreamFramingError("chunk data not followed by CRLF")
            body += buffer[start : start + size]
            pos = start + size + 2
    elif cl:
        if not cl[0].isdigit():
            raise UpstreamFramingError(f"content-length {cl[0]!r}")
        length = int(cl[0])
        if len(buffer) < pos + length:
            return None
        body += buffer[pos : pos + length]
        pos += length
    request = UpstreamRequest(0, method, target, version, headers, bytes(body), head)
    return request, pos


@dataclass
class UpstreamStats:
    bytes_received: int = 0
    requests: list[UpstreamRequest] = field(default_factory=list)
    incomplete: int = 0  # connections that ended with part of a request unread
    errors: list[str] = field(default_factory=list)  # framing errors: the agent sent garbage


class _UpstreamProtocol(asyncio.Protocol):
    def __init__(self, server: RecordingUpstream) -> None:
        self.server = server
        self.id = next(server.ids)
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        stats = self.server.stats
        stats.bytes_received += len(data)
        self.buffer += data
        # Re-parsing a long chunked body on every read is quadratic: wait until it can be complete.
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        if b"\ntransfer-encoding:" in self.buffer[:head_end].lower() and not self.buffer.endswith(b"0\r\n\r\n"):
            return
        while self.buffer:
            try:
                parsed = parse_upstream_request(self.buffer)
            except UpstreamFramingError as exc:
                stats.errors.append(str(exc))
                self.buffer.clear()
                assert self.transport is not None
                self.transport.abort()
                return
            if parsed is None:
                return
            request, used = parsed
            del self.buffer[:used]
            request.connection = self.id
            stats.requests.append(request)
            for hook in self.server.hooks:
                hook(request)
            body = ECHO_PREFIX + request.target
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), b"" if request.method == b"HEAD" else body)
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buffer:
            self.server.stats.incomplete += 1


class RecordingUpstream:
    def __init__(self) -> None:
        self.stats = UpstreamStats()
        self.ids = itertools.count(1)
        self.hooks: list[Callable[[UpstreamRequest], None]] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> RecordingUpstream:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _UpstreamProtocol(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# --------------------------------------------------------------------------- the agent in a thread
# Short deadlines so the timeout cases of the corpus take well under a second each.
CORPUS_PROXY: dict[str, Any] = {
    "max_body_bytes": 16384,  # small, so an over-limit body fits in one read (tests/corpus/generate.py MAX_BODY)
    "header_timeout_s": 0.5,
    "body_timeout_s": 0.5,
    "min_body_rate_bytes_s": 1.0,
    "keepalive_timeout_s": 5.0,
}


def corpus_config(upstream_port: int, **sections: dict[str, Any]) -> AgentConfig:
    table: dict[str, Any] = {
        "server": {"drain_delay_s": 0.0, "shutdown_timeout_s": 1.0},
        "admin": {"enabled": False},  # /metrics on the main listener; no aiohttp admin app needed
        "upstream": {"url": f"http://127.0.0.1:{upstream_port}", "read_timeout_s": 1.0, "connect_timeout_s": 1.0},
        "proxy": dict(CORPUS_PROXY),
        "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
        "logging": {"access_log": False},
    }
    for name, values in sections.items():
        table[name] = {**table.get(name, {}), **values}
    return build_config(table, {}, "corpus")


class AgentThread:
    """The in-process main listener plus a RecordingUpstream on one loop in a daemon thread."""

    def __init__(self, **sections: dict[str, Any]) -> None:
        self.sections = sections
        self.loop = asyncio.new_event_loop()
        self.upstream = RecordingUpstream()
        self.port = 0
        self.loop_errors: list[str] = []
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.accepted: list[ClientConnection] = []  # every client connection, in accept order
        self.max_queued = 0  # longest pipeline queue seen after a read (reset it per case)
        self._thread = threading.Thread(target=self._run, name="corpus-agent", daemon=True)

    def __enter__(self) -> AgentThread:
        self._thread.start()
        if not self._ready.wait(10) or self._failure is not None:
            raise RuntimeError(f"in-process agent did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._on_loop_error)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by __enter__
            self._failure = exc
            self._ready.set()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # "protocol.data_received() call failed" and friends: the agent raised out of a callback.
        exc = context.get("exception")
        self.loop_errors.append(f"{context.get('message')}: {exc!r}")

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        await self.upstream.start()
        config = corpus_config(self.upstream.port, **self.sections)
        async with in_process_agent(config, start_monitor=True) as agent:
            # The agent's own listening socket, opened the way MainListener.start opens it, but each
            # connection's protocol wrapped in a recorder: the request path may be compiled (mypyc),
            # so its classes can be neither patched nor subclassed from here.
            ctx = agent.listener.ctx
            server = await self.loop.create_server(
                lambda: RecordedConnection(self, ClientConnection(ctx)), "127.0.0.1", 0, backlog=1024
            )
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                server.close()
        await self.upstream.close()

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``fn`` on the agent's loop and return its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def settle(self, rounds: int = 3) -> None:
        """Let the loop run a few turns (pending callbacks, socket reads) before looking at it."""
        for _ in range(rounds):
            self.call(lambda: None)
            time.sleep(0.001)


class RecordedConnection(asyncio.Protocol):
    """The transport's protocol: hands every call to the agent's ``ClientConnection`` and records
    the connection (accept order) and its pipeline queue after each read."""

    def __init__(self, owner: AgentThread, conn: ClientConnection) -> None:
        self.owner = owner
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        accepted = self.owner.accepted
        accepted.append(self.conn)
        if len(accepted) > 10000:
            del accepted[:5000]
        self.conn.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.conn.data_received(data)
        self.owner.max_queued = max(self.owner.max_queued, len(self.conn.queue))

    def eof_received(self) -> bool | None:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()


# --------------------------------------------------------------------------- raw client
@dataclass
class Received:
    data: bytes
    closed: bool  # EOF or reset seen before the deadline
    reset: bool
    elapsed_s: float


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


def send_and_read(
    sock: socket.socket, payload: bytes, *, stop: Callable[[bytes], bool] | None = None, timeout_s: float = 3.0
) -> Received:
    """Send ``payload`` and read until the peer closes, ``stop(data)`` is true (once everything
    was sent), or the deadline. Sending and reading are interleaved, so a large pipelined payload
    never deadlocks against the agent's responses. The caller closes the socket."""
    started = time.monotonic()
    out = memoryview(payload)
    received = bytearray()
    closed = reset = False
    deadline = started + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if stop is not None and not out and stop(bytes(received)):
            break
        readable, writable, _ = select.select([sock], [sock] if out else [], [], min(remaining, 0.05))
        if writable and out:
            try:
                out = out[sock.send(out[:65536]) :]
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                out = out[:0]  # the agent closed; read what it said
        if readable:
            try:
                chunk = sock.recv(262144)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    return Received(bytes(received), closed, reset, time.monotonic() - started)


# --------------------------------------------------------------------------- split delivery
class FakeTransport(asyncio.Transport):
    """A client transport for driving ``ClientConnection`` directly: records what the agent
    writes, honours pause/resume the way a socket transport does (the feeder waits), and supports
    ``write_eof`` like TCP (the agent's side ends; ``close`` still follows, with connection_lost)."""

    def __init__(self, on_close: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False  # write_eof(): the client sees EOF, the agent may still read
        self.aborted = False
        self.paused = False
        self._on_close = on_close  # called soon after close/abort, like connection_lost

    def _closing(self) -> None:
        if not self.closed:
            self.closed = True
            if self._on_close is not None:
                asyncio.get_running_loop().call_soon(self._on_close)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    @property
    def ended(self) -> bool:
        """The agent is done with this connection: it closed it or sent EOF."""
        return self.closed or self.eof

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.ended:
            return
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self._closing()

    def abort(self) -> None:
        self.aborted = True
        self._closing()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_reading(self) -> bool:
        return not self.paused

    def get_write_buffer_size(self) -> int:
        return 0


def pieces(payload: bytes, size: int) -> list[bytes]:
    return [payload[i : i + size] for i in range(0, len(payload), size)]


async def feed(conn: ClientConnection, transport: FakeTransport, parts: list[bytes], *, timeout_s: float = 5.0) -> bool:
    """Deliver ``parts`` one ``data_received`` each, waiting while the agent paused reading.
    False when the agent closed (or the deadline passed) before everything was delivered."""
    deadline = time.monotonic() + timeout_s
    for part in parts:
        while transport.paused and not transport.ended:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.001)
        if transport.ended:
            return False
        conn.data_received(part)
        await asyncio.sleep(0)
    return True
