"""The admin listener's HTTP/1.1 server: llhttp (httptools) under a small request/response model.

The admin listener answers a handful of low-traffic routes (probes with details, ``/metrics``,
``/status``, drain), so its server is the thin shell those need and no more: keep-alive,
pipelined requests answered in order, bodies up to ``MAX_BODY_BYTES`` collected before the
handler runs, ``Expect: 100-continue``, and deadlines for a head (``HEAD_TIMEOUT_S``), a body
(``BODY_TIMEOUT_S``) and an idle connection (``KEEPALIVE_TIMEOUT_S``). Everything a request
means (ids, errors, headers, the access log, who may change what) is the application's
(:mod:`agent.admin.app`), over ``agent.rules`` like the main listener's.

llhttp refuses what the main listener's parser refuses (CL+TE, bad framing, obs-fold, bare LF,
CTLs in values); a refused request gets the agent's JSON error and the connection closes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Final
from urllib.parse import parse_qs

import httptools
import orjson

from agent.proxy.wire import CONTINUE_100, status_line
from agent.rules.ids import Ids

log = logging.getLogger("agent.admin")

MAX_HEAD_BYTES: Final = 16 * 1024
MAX_HEADERS: Final = 100
MAX_BODY_BYTES: Final = 64 * 1024
MAX_PIPELINED: Final = 16
HEAD_TIMEOUT_S: Final = 10.0
BODY_TIMEOUT_S: Final = 10.0
KEEPALIVE_TIMEOUT_S: Final = 75.0
SWEEP_PERIOD_S: Final = 0.5
NEW_CONNECTION_GRACE_S: Final = 1.0


class Headers:
    """Header fields in order, looked up without regard to case; values are ``str`` (latin-1)."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = list(fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        lower = name.lower()
        for field, value in self._fields:
            if field.lower() == lower:
                return value
        return default

    def getall(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for field, value in self._fields if field.lower() == lower]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (field for field, _ in self._fields)

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def add(self, name: str, value: str) -> None:
        self._fields.append((name, value))

    def set(self, name: str, value: str) -> None:
        """``name`` with this one value, in the place of any it had."""
        self.popall(name)
        self._fields.append((name, value))

    def popall(self, name: str) -> None:
        lower = name.lower()
        self._fields = [(field, value) for field, value in self._fields if field.lower() != lower]


class Request:
    """One request, its body already read. ``ids`` is set by the application before any handler runs."""

    __slots__ = ("_query", "body", "headers", "http11", "ids", "method", "path", "peer", "query_string", "secure")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        *,
        peer: str | None = None,
        secure: bool = False,
        body: bytes = b"",
        http11: bool = True,
    ) -> None:
        self.method = method
        self.path, _, self.query_string = target.partition("?")
        self.headers = headers
        self.peer = peer  # the socket's peer address, never a header's word
        self.secure = secure  # the agent's own TLS: the admin listener trusts no X-Forwarded-Proto
        self.body = body
        self.http11 = http11
        self.ids: Ids | None = None
        self._query: dict[str, list[str]] | None = None

    @property
    def host(self) -> str:
        return self.headers.get("Host") or ""

    def query_all(self, name: str) -> list[str]:
        if self._query is None:
            self._query = parse_qs(self.query_string, keep_blank_values=True)
        return self._query.get(name, [])

    def query(self, name: str, default: str | None = None) -> str | None:
        values = self.query_all(name)
        return values[0] if values else default

    def cookie(self, name: str) -> str | None:
        """The first cookie called ``name`` in any ``Cookie`` header (RFC 6265 §5.4 syntax)."""
        for header in self.headers.getall("Cookie"):
            for pair in header.split(";"):
                key, sep, value = pair.strip().partition("=")
                if sep and key == name:
                    return value.strip().strip('"')
        return None

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return orjson.loads(self.body)  # orjson.JSONDecodeError is a ValueError


class Response:
    """Status, header fields and a whole body; ``Content-Length`` and ``Connection`` are the server's."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] | dict[str, str] = (),
    ) -> None:
        self.status = status
        self.body = body
        fields = list(headers.items()) if isinstance(headers, dict) else list(headers)
        self.headers = Headers(([("Content-Type", content_type)] if content_type else []) + fields)

    def set_cookie(self, name: str, value: str, *, path: str = "/", http_only: bool = True, same_site: str = "Strict") -> None:
        attributes = [f"{name}={value}"] + (["HttpOnly"] if http_only else []) + [f"Path={path}", f"SameSite={same_site}"]
        self.headers.add("Set-Cookie", "; ".join(attributes))

    def encode(self, *, head_only: bool, close: bool, http10_keep_alive: bool = False) -> bytes:
        """The response on the wire; ``http10_keep_alive``: an HTTP/1.0 client asked to keep the
        connection, which it assumes closed unless told otherwise."""
        lines = [status_line(self.status)]
        for name, value in self.headers.items():
            lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
        if self.status >= 200 and self.status not in (204, 304):
            lines.append(b"Content-Length: %d\r\n" % len(self.body))
        if close:
            lines.append(b"Connection: close\r\n")
        elif http10_keep_alive:
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        if not head_only and self.status not in (204, 304):
            lines.append(self.body)
        return b"".join(lines)


class HttpError(Exception):
    """Raised by a handler (or the router) for an HTTP error: answered as the agent's JSON error.
    Only ``Allow``, ``WWW-Authenticate`` and ``Retry-After`` of ``headers`` reach the client."""

    def __init__(self, status: int, *, headers: dict[str, str] | None = None, message: str | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers or {}
        self.message = message


class Refusal(Exception):
    """A request the server refuses before any handler: its status and error code; the connection closes."""

    def __init__(self, reason: str, status: int = 400, code: str = "BAD_REQUEST") -> None:
        super().__init__(reason)
        self.status = status
        self.code = code


Handler = Callable[[Request], Awaitable[Response]]  # a route's, and the whole application's
Refuse = Callable[[Refusal, str | None, bool], Response]  # (refusal, peer, https) -> the error to send


class _Pending:
    __slots__ = ("keep_alive", "request")

    def __init__(self, request: Request, keep_alive: bool) -> None:
        self.request = request
        self.keep_alive = keep_alive


class AdminConnection(asyncio.Protocol):
    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: str | None = None
        self.secure = False
        self.closed = False
        self.requests = 0
        self.queue: collections.deque[_Pending] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self.busy = False
        self.idle_since = time.monotonic()
        self.head_started: float | None = None
        self.body_started: float | None = None
        self.paused = False
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._refused = False

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if isinstance(peername, (tuple, list)) and peername else None
        self.secure = transport.get_extra_info("ssl_object") is not None
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed or self._refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, Refusal):  # a bug in a callback, not the client's doing
                log.error("admin listener bug while parsing", exc_info=cause or exc)
                cause = Refusal("internal error", 500, "INTERNAL_ERROR")
            self._refuse(cause)
        except httptools.HttpParserUpgrade:
            # llhttp stops after a request that asks to switch protocols. The admin listener
            # switches to nothing: the request is answered as plain HTTP and the connection
            # ends with it (what follows would be in the other protocol).
            self._refused = True
            self._pause()
            if self.queue:
                self.queue[-1].keep_alive = False
        except httptools.HttpParserError as exc:
            self._refuse(Refusal(str(exc) or type(exc).__name__))
        else:
            if self.head_started is not None:
                self._head_bytes += len(data)  # an unterminated field still counts towards the limit
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refuse(Refusal("request head too large", 431, "HEADER_TOO_LARGE"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.queue.clear()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()  # the client went away: nobody reads the answer
        self.transport = None

    # --- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.head_started = time.monotonic()
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._body = []
        self._body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEAD_BYTES // 2:
            raise Refusal("request target too long", 414, "URI_TOO_LONG")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if len(self._headers) >= MAX_HEADERS or self._head_bytes > MAX_HEAD_BYTES:
            raise Refusal("request head too large", 431, "HEADER_TOO_LARGE")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1").strip(" \t")))

    def on_headers_complete(self) -> None:
        self.head_started = None
        self.body_started = time.monotonic()
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise Refusal(f"HTTP/{version} is not served", 505, "HTTP_VERSION_NOT_SUPPORTED")
        if not self._url.startswith(b"/"):
            raise Refusal("request target must be a path")
        if sum(1 for name, _ in self._headers if name.lower() == "host") > 1:
            raise Refusal("more than one Host field")
        expect = next((value for name, value in self._headers if name.lower() == "expect"), None)
        if expect is not None and expect.lower() == "100-continue" and version == "1.1":
            self._write(CONTINUE_100)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > MAX_BODY_BYTES:
            raise Refusal("request body too large", 413, "PAYLOAD_TOO_LARGE")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.body_started = None
        self.requests += 1
        parser = self.parser
        http11 = parser.get_http_version() == "1.1"
        request = Request(
            parser.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            Headers(self._headers),
            peer=self.peer,
            secure=self.secure,
            body=b"".join(self._body),
            http11=http11,
        )
        self._body = []
        self.queue.append(_Pending(request, parser.should_keep_alive() and not self.server.closing))
        if len(self.queue) >= MAX_PIPELINED:
            self._pause()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._work())

    # --- answering ------------------------------------------------------------------------

    async def _work(self) -> None:
        while self.queue and not self.closed:
            pending = self.queue.popleft()
            self.busy = True
            try:
                response = await self.server.handle(pending.request)
            except Exception as exc:  # the application answers its own errors: this is a bug under it
                log.error("admin listener bug", exc_info=exc)
                response = self.server.refuse(Refusal("internal error", 500, "INTERNAL_ERROR"), self.peer, self.secure)
                pending.keep_alive = False
            finally:
                self.busy = False
            keep_alive = pending.keep_alive and not self.server.closing
            head_only = pending.request.method == "HEAD"
            self._write(response.encode(head_only=head_only, close=not keep_alive, http10_keep_alive=not pending.request.http11))
            self.idle_since = time.monotonic()
            if not keep_alive:
                self.close()
                return
            if self.paused and len(self.queue) < MAX_PIPELINED:
                self._resume()

    def _refuse(self, refusal: Refusal) -> None:
        """The request being parsed is refused: the earlier ones are answered first, then this, then close."""
        if self._refused:
            return
        self._refused = True
        self._pause()
        response = self.server.refuse(refusal, self.peer, self.secure)

        try:
            is_head = self.parser.get_method() == b"HEAD"  # a refused HEAD gets the head only, as on the main listener
        except httptools.HttpParserError:
            is_head = False
        earlier = self.worker

        async def after_earlier() -> None:
            if earlier is not None and not earlier.done():
                await asyncio.gather(earlier, return_exceptions=True)
            self._write(response.encode(head_only=is_head, close=True))
            self.close()

        self.worker = asyncio.get_running_loop().create_task(after_earlier())

    def _write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()  # after what was written is flushed

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    @property
    def idle(self) -> bool:
        return not self.busy and not self.queue and self.head_started is None and self.body_started is None

    def sweep(self, now: float) -> None:
        """The deadlines: a head within ``HEAD_TIMEOUT_S``, a body within ``BODY_TIMEOUT_S``, idle keep-alive."""
        if self.closed:
            return
        head_late = self.head_started is not None and now - self.head_started > HEAD_TIMEOUT_S
        body_late = self.body_started is not None and now - self.body_started > BODY_TIMEOUT_S
        if head_late or body_late:
            self.abort()
        elif self.idle:
            limit = KEEPALIVE_TIMEOUT_S if self.requests else HEAD_TIMEOUT_S
            if now - self.idle_since > limit:
                self.close()


class AdminServer:
    """The listening socket, its connections and their deadlines."""

    def __init__(self, handle: Handler, refuse: Refuse) -> None:
        self.handle = handle
        self.refuse = refuse
        self.connections: set[AdminConnection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AdminConnection(self),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=tls,
            ssl_handshake_timeout=HEAD_TIMEOUT_S if tls is not None else None,
        )
        self._sweeper = loop.create_task(self._sweep_forever(), name="admin-listener-sweeper")
        server: Any = self._server  # uvloop's sockets are a list, typeshed says tuple
        address = server.sockets[0].getsockname()
        return address[0], address[1]

    @property
    def port(self) -> int:
        assert self._server is not None
        server: Any = self._server
        return int(server.sockets[0].getsockname()[1])

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_PERIOD_S)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.sweep(now)

    async def close(self, timeout_s: float) -> None:
        """Stop accepting, close idle connections, let running requests finish within ``timeout_s``."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + timeout_s
        while self.connections and time.monotonic() < deadline:
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.idle and (conn.requests or now - conn.idle_since > NEW_CONNECTION_GRACE_S):
                    conn.close()
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
