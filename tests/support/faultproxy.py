"""A fault-injecting TCP proxy for tests, modelled on Shopify toxiproxy's toxics.

``FaultProxy(target_host, target_port)`` listens on ``127.0.0.1`` (loopback only) and forwards
every accepted connection to the target: put it between the agent and the upstream app (point
``upstream.url`` at ``proxy.url``) or between the agent and PostgreSQL (``proxy.dsn(pg.dsn)``).
It runs its own asyncio event loop in a background thread, so a test flips toxics with plain
method calls while the agent runs as a subprocess::

    with FaultProxy("127.0.0.1", app_port) as proxy:
        proxy.latency(2.0)              # every response chunk 2 s late
        proxy.clear()                   # back to a clean pipe

Directions follow toxiproxy: ``"upstream"`` is client -> target (requests, queries),
``"downstream"`` is target -> client (responses, rows).

Shaping toxics (per direction, they combine):

* ``latency(s, jitter_s)``          every chunk delayed by ``s`` ± ``jitter_s`` from its arrival
* ``bandwidth(bytes_per_s)``        throughput limit
* ``slicer(size, variation, delay)``  chunks cut into tiny segments with a delay between them
* ``blackhole()``                   bytes are swallowed, nothing is answered, nothing is closed;
                                    a connection accepted while blackholed never reaches the target

Connection faults (one at a time; a new one replaces the old):

* ``down()`` / ``up()``             listener closed (connection refused) and open connections cut
* ``cut_links(reset=True)``         every open connection cut now, both legs, by RST (``reset``) or
                                    FIN: an app that dies mid-stream (a WebSocket tunnel, say); the
                                    listener stays open
* ``reset_before_response()``       RST (``SO_LINGER`` 0) to the client as soon as request bytes
                                    arrive; with ``forward=True`` the target gets the bytes first
                                    (and its connection then ends with a FIN, so it can read them)
* ``reset_after_headers()``         forward the response head (up to the blank line), then RST
* ``close_mid_body(n)``             forward the response head and ``n`` body bytes, then close (FIN)
* ``close_on_reuse()``              answer the first request on a connection, close (FIN) when the
                                    next request's bytes arrive, like an app whose keep-alive timer
                                    fires just then; ``forward=True``: the target gets those bytes
* ``respond_with(data)``            answer every request with ``data`` (a malformed response, say)
                                    and close; the target never sees the request

The response-head toxics read HTTP/1.1 framing only as far as the blank line; on every connection
they break the response to the first request that starts after they were set.

Bounds: every read loop ends at EOF, on an error or at ``stop()``; after a ``forward=True`` fault
cut the client, the target's answer is read and dropped for at most ``LINGER_S``;
connecting to the target is bounded by ``CONNECT_TIMEOUT_S``; controls wait at most
``CALL_TIMEOUT_S`` for the proxy's loop. ``stop()`` closes the listener and every connection.
A client that half-closes (``shutdown(SHUT_WR)``) ends its connection: neither the agent nor
asyncpg do that.

Observability for assertions: ``accepted``, ``active``, ``max_active``, ``bytes_up``,
``bytes_down`` (forwarded), ``events`` (``(link id, name)``: ``client_closed``,
``target_closed``, ``target_unreachable`` and one per toxic that fired), and on request the
forwarded bytes themselves (``capture()``, then ``captured["upstream"|"downstream"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal

Direction = Literal["upstream", "downstream"]
UPSTREAM: Direction = "upstream"
DOWNSTREAM: Direction = "downstream"
BOTH: tuple[Direction, ...] = (UPSTREAM, DOWNSTREAM)

READ_SIZE = 64 * 1024
QUEUE_CHUNKS = 4  # at most this many chunks wait inside the proxy per direction: backpressure stays real
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 5.0
LINGER_S = 2.0
BLACKHOLE_POLL_S = 0.05
HEAD_END = b"\r\n\r\n"
MAX_HEAD_SCAN = 256 * 1024  # a "head" longer than this is not HTTP: the head toxics give up and forward


@dataclass(frozen=True, slots=True)
class Shaping:
    latency_s: float = 0.0
    jitter_s: float = 0.0
    rate_bytes_s: float = 0.0
    slice_size: int = 0
    slice_variation: int = 0
    slice_delay_s: float = 0.0
    blackhole: bool = False


@dataclass(frozen=True, slots=True)
class Fault:
    kind: Literal["reset_before_response", "reset_after_headers", "close_mid_body", "close_on_reuse", "respond_with"]
    forward: bool = False
    body_bytes: int = 0
    data: bytes = b""


# A queued item: bytes with their arrival time, or an action run in order after the bytes before it.
Item = tuple[float, bytes] | Callable[[], None] | None


def _directions(direction: Direction | Literal["both"]) -> tuple[Direction, ...]:
    if direction == "both":
        return BOTH
    if direction not in BOTH:
        raise ValueError(f"direction must be 'upstream', 'downstream' or 'both', got {direction!r}")
    return (direction,)


def _outcome(task: asyncio.Task[Any]) -> str:
    """A finished task's result, or "error" when it failed or was cancelled."""
    if task.cancelled() or task.exception() is not None:
        return "error"
    return str(task.result())


def _rst(writer: asyncio.StreamWriter) -> None:
    """Abort with SO_LINGER 0: the peer gets a TCP RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One accepted connection and its connection to the target."""

    def __init__(self, proxy: FaultProxy, link_id: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.id = link_id
        self.client_r = client_r
        self.client_w = client_w
        self.target_r: asyncio.StreamReader | None = None
        self.target_w: asyncio.StreamWriter | None = None
        self.answered = False  # downstream bytes went out since the last request bytes arrived
        self.requests = 0  # request starts seen (upstream bytes after a response, or the first bytes)
        self.head_scan: bytearray | None = None  # response head being scanned by a head toxic
        self.body_left: int | None = None  # close_mid_body: body bytes still to forward
        self.client_cut = False  # the client connection was cut on purpose
        self.target_cut = False  # the target connection was cut on purpose
        self.linger = False  # keep the target leg (discarding) for LINGER_S after the client went away

    # --- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        proxy = self.proxy
        try:
            if proxy.shaping(UPSTREAM).blackhole or proxy.shaping(DOWNSTREAM).blackhole:
                proxy._event(self.id, "blackholed_connection")
                await self._hold_blackholed()
                return
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    self.target_r, self.target_w = await asyncio.open_connection(proxy.target_host, proxy.target_port)
            except (OSError, TimeoutError):
                proxy._event(self.id, "target_unreachable")
                return
            up = asyncio.create_task(self._pump(UPSTREAM, self.client_r, self.target_w))
            down = asyncio.create_task(self._pump(DOWNSTREAM, self.target_r, self.client_w))
            try:
                done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
                gone = _outcome(up if up in done else down)
                if self.linger and down not in done:
                    await asyncio.wait({down}, timeout=LINGER_S)
                elif gone == "held" and up not in done:
                    await up  # the target is gone but the blackhole keeps the client waiting
                    gone = "target"
                if not self.client_cut:
                    proxy._event(self.id, f"{gone}_closed" if gone in ("client", "target") else "link_error")
            finally:
                for task in (up, down):
                    task.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        finally:
            self._close_all()

    async def _hold_blackholed(self) -> None:
        """Accepted while blackholed: swallow what the client sends until it leaves or the blackhole lifts."""
        proxy = self.proxy
        while proxy.shaping(UPSTREAM).blackhole or proxy.shaping(DOWNSTREAM).blackhole:
            try:
                data = await asyncio.wait_for(self.client_r.read(READ_SIZE), BLACKHOLE_POLL_S)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                return
            if not data:
                return
        # The blackhole lifted: this connection's first bytes are gone, so it cannot be trusted.

    def _close_all(self) -> None:
        for writer in (self.client_w, self.target_w):
            if writer is not None and not writer.is_closing():
                writer.close()

    def cut_client(self, *, reset: bool) -> None:
        self.client_cut = True
        if reset:
            _rst(self.client_w)
        elif not self.client_w.is_closing():
            self.client_w.close()

    def cut_all(self, *, reset: bool) -> None:
        self.cut_client(reset=reset)
        self.target_cut = True
        if self.target_w is not None:
            self.target_w.transport.abort()

    # --- pumping ---------------------------------------------------------------------------

    async def _pump(self, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        """Move bytes one way until one side goes away; returns which: "client" or "target" (the
        one read from ended, or writing to the other failed), or "held" (EOF while blackholed)."""
        source, destination = ("client", "target") if direction == UPSTREAM else ("target", "client")
        queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_CHUNKS)
        sender = asyncio.create_task(self._send(direction, queue, writer))
        gone = source
        try:
            while True:
                try:
                    data = await reader.read(READ_SIZE)
                except (ConnectionError, OSError):
                    break
                if not data:
                    if self.proxy.shaping(direction).blackhole:
                        gone = "held"
                    break
                if self.client_cut:
                    continue  # lingering: drain and drop
                if self.proxy.shaping(direction).blackhole:
                    continue
                for item in self._inspect(direction, data):
                    if not await self._enqueue(queue, item, sender):
                        return destination
            if not await self._enqueue(queue, None, sender):
                return destination
            await asyncio.wait({sender})
            return destination if _outcome(sender) == "error" else gone
        finally:
            if not sender.done():
                sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)  # also retrieves a send error

    @staticmethod
    async def _enqueue(queue: asyncio.Queue[Item], item: Item, sender: asyncio.Task[None]) -> bool:
        """Queue ``item``, waiting while the queue is full; False once the sender has died."""
        if sender.done():
            return False
        if not queue.full():
            queue.put_nowait(item)
            return True
        put = asyncio.ensure_future(queue.put(item))
        await asyncio.wait({put, sender}, return_when=asyncio.FIRST_COMPLETED)
        if put.done():
            return True
        put.cancel()
        await asyncio.gather(put, return_exceptions=True)
        return False

    async def _send(self, direction: Direction, queue: asyncio.Queue[Item], writer: asyncio.StreamWriter) -> None:
        proxy = self.proxy
        while True:
            item = await queue.get()
            if item is None:
                return
            if callable(item):
                item()
                continue
            arrived, data = item
            if not data:
                continue
            shaping = proxy.shaping(direction)
            if shaping.latency_s or shaping.jitter_s:
                delay = shaping.latency_s + random.uniform(-shaping.jitter_s, shaping.jitter_s)
                wait = arrived + max(0.0, delay) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            if (self.client_cut and direction == DOWNSTREAM) or (self.target_cut and direction == UPSTREAM):
                continue  # the side these bytes were for was cut on purpose
            for i, piece in enumerate(self._segments(data, shaping)):
                if i and shaping.slice_delay_s:
                    await asyncio.sleep(shaping.slice_delay_s)
                if shaping.rate_bytes_s:
                    await asyncio.sleep(len(piece) / shaping.rate_bytes_s)
                proxy._count(direction, piece)
                if direction == DOWNSTREAM:
                    self.answered = True
                writer.write(piece)
                await writer.drain()

    @staticmethod
    def _segments(data: bytes, shaping: Shaping) -> list[bytes]:
        if shaping.slice_size:
            pieces = []
            pos = 0
            while pos < len(data):
                size = max(1, shaping.slice_size + random.randint(-shaping.slice_variation, shaping.slice_variation))
                pieces.append(data[pos : pos + size])
                pos += size
            return pieces
        if shaping.rate_bytes_s:
            step = max(1, int(shaping.rate_bytes_s / 20))  # 50 ms worth per write: a smooth rate
            return [data[i : i + step] for i in range(0, len(data), step)]
        return [data]

    # --- faults ----------------------------------------------------------------------------

    def _inspect(self, direction: Direction, data: bytes) -> list[Item]:
        """What to queue for ``data`` given the current fault: bytes and in-order actions."""
        now = time.monotonic()
        fault = self.proxy.fault
        if direction == UPSTREAM:
            new_request = self.requests == 0 or self.answered
            if new_request:
                self.requests += 1
                self.answered = False
            if fault is None or not new_request:
                return [(now, data)]
            if fault.kind == "reset_before_response":
                self.linger = fault.forward
                action = (lambda: self.cut_client(reset=True)) if fault.forward else (lambda: self.cut_all(reset=True))
                return self._act_up(fault, data, "reset_before_response", action)
            if fault.kind == "close_on_reuse" and self.requests > 1:
                self.linger = fault.forward
                return self._act_up(fault, data, "close_on_reuse", lambda: self.cut_client(reset=False))
            if fault.kind == "respond_with":
                self.proxy._event(self.id, "respond_with")
                self.client_w.write(fault.data)
                self.cut_all(reset=False)
                return []
            if fault.kind in ("reset_after_headers", "close_mid_body"):
                self.head_scan = bytearray()  # the response to this request is the one to break
            return [(now, data)]
        # downstream
        if self.head_scan is None and self.body_left is None:
            return [(now, data)]
        if fault is None or fault.kind not in ("reset_after_headers", "close_mid_body"):
            self.head_scan = self.body_left = None
            return [(now, data)]
        if self.body_left is not None:
            return self._cut_body(now, data)
        assert self.head_scan is not None
        start = len(self.head_scan)
        self.head_scan += data
        end = self.head_scan.find(HEAD_END, max(0, start - 3))
        if end < 0:
            if len(self.head_scan) > MAX_HEAD_SCAN:
                self.head_scan = None
            return [(now, data)]
        self.head_scan = None
        head_len = end + len(HEAD_END) - start  # bytes of ``data`` that belong to the head
        if fault.kind == "reset_after_headers":
            self.proxy._event(self.id, "reset_after_headers")
            return [(now, data[:head_len]), lambda: self.cut_all(reset=True)]
        self.body_left = fault.body_bytes
        return [(now, data[:head_len]), *self._cut_body(now, data[head_len:])]

    def _cut_body(self, now: float, data: bytes) -> list[Item]:
        assert self.body_left is not None
        if len(data) < self.body_left:
            self.body_left -= len(data)
            return [(now, data)]
        keep, self.body_left = data[: self.body_left], None
        self.proxy._event(self.id, "close_mid_body")
        return [(now, keep), lambda: self.cut_all(reset=False)]

    def _act_up(self, fault: Fault, data: bytes, name: str, action: Callable[[], None]) -> list[Item]:
        self.proxy._event(self.id, name)
        if fault.forward:
            return [(time.monotonic(), data), action]
        action()
        return []


class FaultProxy:
    """See the module docstring. Thread-safe controls; the proxy itself lives in its own thread."""

    def __init__(self, target_host: str, target_port: int, *, name: str = "faultproxy") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.name = name
        self.port = 0
        self.fault: Fault | None = None
        self._shaping: dict[Direction, Shaping] = {UPSTREAM: Shaping(), DOWNSTREAM: Shaping()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # Counters (written by the proxy's thread, read by the test's; see reset_stats()).
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.events: list[tuple[int, str]] = []
        self._capture_limit = 0
        self.captured: dict[Direction, bytearray] = {UPSTREAM: bytearray(), DOWNSTREAM: bytearray()}

    @classmethod
    def for_url(cls, url: str, **kwargs: str) -> FaultProxy:
        """A proxy in front of ``http://host:port`` or ``postgresql://...@host:port/...``."""
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"need an explicit host and port in {url!r}")
        return cls(parts.hostname, parts.port, **kwargs)

    # --- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by the proxy's."""
        parts = urllib.parse.urlsplit(dsn)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._main(ready))
            except BaseException as exc:  # surfaced by start() when it happens before ready
                failure.append(exc)
                ready.set()
            finally:
                self._cancel_leftovers(loop)
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(CALL_TIMEOUT_S) or failure:
            raise RuntimeError(f"fault proxy did not start: {failure[:1]}")
        return self

    def stop(self) -> None:
        """Close the listener and every connection, end the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        stopping = self._stopping
        if stopping is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(CALL_TIMEOUT_S * 2)
        if thread.is_alive():
            raise RuntimeError("fault proxy thread did not stop")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def _main(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        await self._listen()
        ready.set()
        await self._stopping.wait()
        await self._unlisten()
        await self._cut_links()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def _cut_links(self) -> None:
        """Close every connection; each link's task then ends by itself (cancelled after 1 s)."""
        for link in list(self._links):
            link.cut_all(reset=False)
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=1.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        link = _Link(self, next(self._ids), reader, writer)
        self._links.add(link)
        self._tasks.add(task)
        with self._lock:
            self.accepted += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            await link.run()
        except asyncio.CancelledError:
            # Only stop() cancels a link (after cutting it). Ending normally matters: asyncio 3.11's
            # stream callback calls task.exception() on this task and logs an error if it was cancelled.
            pass
        finally:
            self._links.discard(link)
            self._tasks.discard(task)
            with self._lock:
                self.active -= 1

    def _call(self, coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("fault proxy not started")
        asyncio.run_coroutine_threadsafe(coro_fn(), loop).result(CALL_TIMEOUT_S)

    # --- stats -----------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Zero the counters, forget events and captured bytes (``active`` stays: it is a gauge)."""
        with self._lock:
            self.accepted = 0
            self.max_active = self.active
            self.bytes_up = 0
            self.bytes_down = 0
            self.events = []
            self._capture_limit = 0
            self.captured = {UPSTREAM: bytearray(), DOWNSTREAM: bytearray()}

    def _count(self, direction: Direction, data: bytes) -> None:
        with self._lock:
            if direction == UPSTREAM:
                self.bytes_up += len(data)
            else:
                self.bytes_down += len(data)
            room = self._capture_limit - len(self.captured[direction])
            if room > 0:
                self.captured[direction] += data[:room]

    def capture(self, limit_bytes: int = 1024 * 1024) -> None:
        """Keep a copy of the first ``limit_bytes`` forwarded each way (all connections, in the
        order written) in ``captured[direction]``, from now on; 0 stops capturing."""
        with self._lock:
            self._capture_limit = limit_bytes
            self.captured = {UPSTREAM: bytearray(), DOWNSTREAM: bytearray()}

    def _event(self, link_id: int, name: str) -> None:
        with self._lock:
            self.events.append((link_id, name))

    def count(self, event: str) -> int:
        with self._lock:
            return sum(1 for _, name in self.events if name == event)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
        """Poll ``predicate`` (on the caller's thread) until true or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # --- toxics ----------------------------------------------------------------------------

    def shaping(self, direction: Direction) -> Shaping:
        return self._shaping[direction]

    def _shape(self, direction: Direction | Literal["both"], **changes: float | int | bool) -> None:
        for d in _directions(direction):
            self._shaping[d] = replace(self._shaping[d], **changes)  # type: ignore[arg-type]

    def latency(self, latency_s: float, jitter_s: float = 0.0, *, direction: Direction | Literal["both"] = DOWNSTREAM) -> None:
        self._shape(direction, latency_s=latency_s, jitter_s=jitter_s)

    def bandwidth(self, bytes_per_s: float, *, direction: Direction | Literal["both"] = DOWNSTREAM) -> None:
        """Limit throughput; 0 removes the limit."""
        self._shape(direction, rate_bytes_s=float(bytes_per_s))

    def slicer(
        self, size: int = 1, variation: int = 0, delay_s: float = 0.001, *, direction: Direction | Literal["both"] = DOWNSTREAM
    ) -> None:
        """Cut every chunk into segments of ``size`` ± ``variation`` bytes, ``delay_s`` apart; size 0 removes it."""
        self._shape(direction, slice_size=size, slice_variation=variation, slice_delay_s=delay_s)

    def blackhole(self, *, direction: Direction | Literal["both"] = "both") -> None:
        self._shape(direction, blackhole=True)

    def unblackhole(self, *, direction: Direction | Literal["both"] = "both") -> None:
        self._shape(direction, blackhole=False)

    def reset_before_response(self, *, forward: bool = False) -> None:
        self.fault = Fault("reset_before_response", forward=forward)

    def reset_after_headers(self) -> None:
        self.fault = Fault("reset_after_headers")

    def close_mid_body(self, body_bytes: int) -> None:
        self.fault = Fault("close_mid_body", body_bytes=body_bytes)

    def close_on_reuse(self, *, forward: bool = False) -> None:
        self.fault = Fault("close_on_reuse", forward=forward)

    def respond_with(self, data: bytes) -> None:
        self.fault = Fault("respond_with", data=data)

    def down(self, *, cut_connections: bool = True) -> None:
        """Close the listener (new connections are refused) and, by default, cut open ones."""

        async def go() -> None:
            await self._unlisten()
            if cut_connections:
                await self._cut_links()

        self._call(go)

    def cut_links(self, *, reset: bool = True) -> None:
        """Cut every open connection now, both legs (RST with ``reset``, else FIN); the listener stays open."""

        async def go() -> None:
            for link in list(self._links):
                link.cut_all(reset=reset)

        self._call(go)

    def up(self) -> None:
        """Listen again on the same port (no-op when listening)."""

        async def go() -> None:
            if self._server is None:
                await self._listen()

        self._call(go)

    def clear(self) -> None:
        """Remove every toxic and listen again: a clean pipe."""
        self.fault = None
        self._shaping = {UPSTREAM: Shaping(), DOWNSTREAM: Shaping()}
        self.up()
