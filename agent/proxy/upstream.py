"""The upstream leg: HTTP/1.1 connections to the app (asyncio Protocol + llhttp) and their pool.

A connection carries one exchange at a time. The pool keeps idle connections (newest first) for
less than the app's own keep-alive timeout, bounds the total, and never hands out a connection
the app has closed (``connection_lost`` removes it at once).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import TYPE_CHECKING, Any, Final

import httptools

from agent.proxy.wire import lower_name, strip_value

if TYPE_CHECKING:
    from agent.proxy.exchange import Exchange

MAX_RESPONSE_HEAD_BYTES: Final = 64 * 1024
MAX_RESPONSE_HEADERS: Final = 128


class UpstreamProtocolError(Exception):
    """The app sent something that is not a valid HTTP/1.1 response."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "_framed",
        "_head_bytes",
        "_headers",
        "closed",
        "exchange",
        "idle_since",
        "last_progress",
        "parser",
        "pool",
        "responses",
        "switching",
        "tls_error",
        "transport",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.responses = 0  # completed on this connection; > 0 means it was reused
        self.idle_since = 0.0
        self.last_progress = 0.0
        self._headers: list[tuple[bytes, bytes, bytes]] = []  # (name, value, lower-case name)
        self._head_bytes = 0
        self._framed = False
        self.switching: list[tuple[bytes, bytes, bytes]] | None = None  # a 101's headers, until the switch
        self.tls_error: str | None = None  # the TLS error (an alert from the app) that ended the connection

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # bytes nobody asked for: this connection cannot be trusted
            self.abort()
            return
        self.last_progress = time.monotonic()
        client = exchange.client
        client.cork()
        try:
            self._feed(data)
        except Exception as exc:  # a bug in the agent while relaying the response
            self.abort()
            exchange.internal_error(exc, "upstream data")
        finally:
            client.uncork()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # llhttp stops after a 101: what follows its head is already the tunnel's.
            exchange, headers = self.exchange, self.switching
            if exchange is None or headers is None:
                self.abort()
                return
            self.exchange = self.switching = None
            self.pool.discard(self)  # a connection that carried a tunnel never goes back to the pool
            exchange.switch_protocols(self, headers, data[upgrade.args[0] :])
        except (httptools.HttpParserError, UpstreamProtocolError) as exc:
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else exc
            if cause is not None and not isinstance(cause, (UpstreamProtocolError, httptools.HttpParserError)):
                raise cause from None  # a callback of the agent's failed: not the app's doing
            # Only an exchange still waiting on this connection hears of it; bytes after a
            # complete response (a second, unasked-for response) just end the connection.
            pending = self.exchange
            self.abort()
            if pending is not None:
                pending.on_upstream_error(UpstreamProtocolError(str(cause or exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # The parser's callbacks and the exchange make this protocol part of reference cycles:
        # dropping the transport frees its buffers (and TLS state) now, not at the next cyclic GC.
        self.transport = None
        if isinstance(exc, ssl.SSLError):
            self.tls_error = failure_reason(exc)
        self.pool.discard(self)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.on_upstream_lost(self)

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.pause_client_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.resume_client_reading()

    # --- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.exchange is None:
            raise UpstreamProtocolError("response bytes after the response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_RESPONSE_HEAD_BYTES or len(self._headers) >= MAX_RESPONSE_HEADERS:
            raise UpstreamProtocolError("response head too large")
        lower = lower_name(name)
        if lower == b"content-length" or lower == b"transfer-encoding":
            self._framed = True
        self._headers.append((name, strip_value(value), lower))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status == 101:
            if self.exchange is None or self.exchange.head.upgrade is None:
                raise UpstreamProtocolError("101 Switching Protocols to a request that asked for no tunnel")
            self.switching, self._headers, self._head_bytes = self._headers, [], 0
            return
        if status < 200:  # 1xx: never forwarded (the agent answers Expect itself); the final response follows
            self._headers, self._head_bytes, self._framed = [], 0, False
            return
        exchange = self.exchange
        if exchange is None:
            raise UpstreamProtocolError("response bytes after the response")
        headers, framed = self._headers, self._framed
        self._headers, self._head_bytes, self._framed = [], 0, False  # ready for the next response
        # The reason phrase is not kept (RFC 9112 §4: clients ignore it); the agent sends the standard one.
        if exchange.on_response_head(status, headers, framed):
            # No body follows a HEAD response, and llhttp cannot be told so: the exchange ends
            # here and the connection is not reused.
            self._complete(False)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200 or self.exchange is None:
            return
        self._complete(self.parser.should_keep_alive())

    def _complete(self, keep_alive: bool) -> None:
        exchange, self.exchange = self.exchange, None
        self.responses += 1
        if exchange is not None:
            exchange.on_response_complete(self, keep_alive)

    # --- used by the exchange -------------------------------------------------------------

    def start(self, exchange: Exchange, data: bytes) -> None:
        self.exchange = exchange
        self.last_progress = time.monotonic()
        assert self.transport is not None
        self.transport.write(data)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def hand_over(self) -> asyncio.Transport:
        """The transport, for a tunnel to take over (the connection has left the pool)."""
        assert self.transport is not None
        self.closed = True
        return self.transport

    def abort(self) -> None:
        """Drop the connection now (never returned to the pool)."""
        self.exchange = None
        if not self.closed:
            self.closed = True
            self.pool.discard(self)
            if self.transport is not None:
                self.transport.abort()


class PoolExhausted(Exception):
    """No upstream connection became free in time."""


def failure_reason(exc: BaseException) -> str:
    """Why a connection to the app failed, for the log (never a response): the exception's type,
    and for TLS what OpenSSL said (``SSLCertVerificationError: Hostname mismatch, ...``,
    ``SSLError: TLSV13_ALERT_CERTIFICATE_REQUIRED``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{type(exc).__name__}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"{type(exc).__name__}: {exc.reason}"
    return type(exc).__name__


class UpstreamPool:
    """At most ``max_connections`` connections; idle ones kept ``idle_timeout_s``, newest first."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        unix_path: str | None,
        max_connections: int,
        connect_timeout_s: float,
        idle_timeout_s: float = 4.0,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self.host = host
        self.tls = tls  # the app speaks https: pooled connections keep their TLS session
        self.server_name = server_name or host
        self.port = port
        self.unix_path = unix_path
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.idle: list[UpstreamConnection] = []
        self.open: set[UpstreamConnection] = set()
        self._connecting = 0
        self._waiters: collections.deque[asyncio.Future[UpstreamConnection | None]] = collections.deque()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> UpstreamPool:
        if url.startswith("unix:"):
            return cls(host="localhost", port=0, unix_path=url[5:], **kwargs)
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        default_port = 443 if parts.scheme == "https" else 80
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or default_port, unix_path=None, **kwargs)

    @property
    def size(self) -> int:
        return len(self.open) + self._connecting

    def take_idle(self) -> UpstreamConnection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        return None

    async def acquire(self) -> UpstreamConnection:
        """A fresh or freed connection; raises OSError/TimeoutError on connect, PoolExhausted."""
        while True:
            conn = self.take_idle()
            if conn is not None:
                return conn
            if self.size < self.max_connections:
                return await self._connect()
            waiter: asyncio.Future[UpstreamConnection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    handed = await waiter
            except TimeoutError:
                raise PoolExhausted from None
            finally:
                if not waiter.done():
                    waiter.cancel()
            if handed is not None:
                return handed

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        self._connecting += 1
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                if self.unix_path:
                    _, protocol = await loop.create_unix_connection(lambda: UpstreamConnection(self), self.unix_path)
                else:
                    _, protocol = await loop.create_connection(
                        lambda: UpstreamConnection(self),
                        self.host,
                        self.port,
                        ssl=self.tls,
                        server_hostname=self.server_name if self.tls is not None else None,
                        ssl_handshake_timeout=self.connect_timeout_s if self.tls is not None else None,
                    )
        finally:
            self._connecting -= 1
        conn: UpstreamConnection = protocol
        if conn.closed:
            raise ConnectionResetError("upstream closed the connection at once")
        self.open.add(conn)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection whose response completed back (keep-alive)."""
        if conn.closed:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        if conn in self.open:
            self.open.discard(conn)
            if conn in self.idle:
                self.idle.remove(conn)
            while self._waiters:  # a slot is free: let one waiter connect
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break

    def sweep(self, now: float) -> None:
        """Close idle connections older than ``idle_timeout_s`` (before the app closes them)."""
        if self.idle and now - self.idle[0].idle_since > self.idle_timeout_s:
            stale = [c for c in self.idle if now - c.idle_since > self.idle_timeout_s]
            for conn in stale:
                self.idle.remove(conn)
                conn.abort()

    def close(self) -> None:
        for conn in list(self.open):
            conn.abort()
        self.idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()
