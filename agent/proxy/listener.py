"""The main listener: client connections parsed with llhttp (httptools), strict by default.

llhttp already refuses what aiohttp's C parser refuses (CL+TE, bad Content-Length, bad chunks,
obs-fold, bare LF, CTLs in values, whitespace before the colon, ...). On top of it this module
refuses what llhttp lets through and a proxy must not forward: a missing or duplicate Host,
HTTP versions other than 1.0/1.1, any Transfer-Encoding but exactly ``chunked`` (and none on
HTTP/1.0), request targets that are not origin-form, CONNECT, and oversized heads. Deadlines are
the agent's own: a head must arrive within ``proxy.header_timeout_s``, a body must keep moving
(``proxy.body_timeout_s``, ``proxy.min_body_rate_bytes_s``), idle keep-alive connections close
after ``proxy.keepalive_timeout_s``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from typing import Any, Final

import httptools

from agent.proxy.context import ProxyContext
from agent.proxy.exchange import Exchange
from agent.proxy.request_head import Reject, RequestHead, parse_request_head, upstream_request_head
from agent.proxy.response_head import error_answer
from agent.proxy.settings import ProxyLimits
from agent.proxy.wire import CONTINUE_100, lower_name, strip_value
from agent.rules.ids import new_ids
from agent.tls import ClientCertificate, client_certificate

log = logging.getLogger("agent.proxy")

MAX_PIPELINED: Final = 1024  # bounded anyway: reading pauses once a request waits behind another
SWEEP_PERIOD_S: Final = 0.25
NEW_CONNECTION_GRACE_S: Final = 1.0
LINGER_S: Final = 2.0
CLOSE_HANDSHAKE_S: Final = 3.0  # for the WebSocket close handshake at shutdown


def head_too_large(reason: str) -> Reject:
    """RFC 6585 §5: a head (or one of its fields) over the limit is 431."""
    return Reject(reason, 431, "HEADER_TOO_LARGE")


class ClientConnection(asyncio.Protocol):
    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: str | None = None
        self.trusted = False
        self.tls = False
        self.client_cert: ClientCertificate | None = None
        self.http11 = True
        self.closed = False
        self.current: Exchange | None = None
        self.parsing: Exchange | None = None
        self.queue: collections.deque[Exchange] = collections.deque()
        self._paused: set[str] = set()
        now = time.monotonic()
        self.idle_since = now
        self.requests = 0  # requests whose head was parsed on this connection
        self.write_paused_since: float | None = None  # the client stopped reading what we send
        self.head_started: float | None = None
        self.body_started: float | None = None
        self.body_received = 0
        self.last_progress = now
        self._url = b""
        self._headers: list[tuple[bytes, bytes, bytes]] = []
        self._head_bytes = 0
        self._corked: list[bytes] | None = None
        self._body_fed = 0  # raw bytes received while a body was being parsed
        self._starting: Exchange | None = None
        self._reject_after: Reject | None = None
        self._last: Exchange | None = None  # the request parsed last
        self._upgrading: Exchange | None = None  # a request for a tunnel, until it is answered
        self._after_upgrade = b""  # bytes that came after it

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else None
        self.trusted = self.ctx.settings.is_trusted(self.peer)
        ssl_object = transport.get_extra_info("ssl_object")
        self.tls = ssl_object is not None  # the agent terminated TLS for this connection
        self.client_cert = client_certificate(ssl_object)  # once per connection, when one was verified
        self.ctx.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_progress = time.monotonic()
        try:
            self._feed(data)
        except Exception as exc:  # a bug in the agent, not the client's doing
            self.internal_error(exc, "client data")
        # Forwarding starts once the whole packet parsed: a bad chunk sent together with the
        # head means the app never sees the request at all.
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done and not self.closed and starting is self.current:
            try:
                starting.begin()
            except Exception as exc:
                self.internal_error(exc, "begin")

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised: a Reject carries its own status and code;
            # anything else is the agent's bug.
            cause = exc.__context__
            if isinstance(cause, Reject):
                self.reject(cause)
            else:
                raise (cause or exc) from None
        except httptools.HttpParserUpgrade as upgrade:
            # llhttp stops after a request that asks to switch protocols. For a protocol the agent
            # tunnels, what follows belongs to the tunnel if the app answers 101, else to the next
            # request. Any other was forwarded without Upgrade: the connection ends with its response.
            self.pause_reading("upgrade")
            self._after_upgrade = data[upgrade.args[0] :]
            if self._last is not None and self._last.head.upgrade is not None:
                self._upgrading = self._last
                if self._last.done:  # answered by the agent itself (a local path) as it was parsed: no 101 comes
                    asyncio.get_running_loop().call_soon(self._resume_http)
            else:
                for exchange in (self.current, *self.queue):
                    if exchange is not None:
                        exchange.close_after()
        except httptools.HttpParserError as exc:
            self.reject(Reject(str(exc) or type(exc).__name__))
        except Reject as exc:
            self.reject(exc)
        else:
            self._bound_framing(len(data))

    def _bound_framing(self, received: int) -> None:
        limit = self.ctx.limits.max_head_bytes
        if self.head_started is not None:
            # llhttp buffers a header field until its line ends: count raw bytes too, so an
            # unterminated field cannot grow past the head limit.
            self._head_bytes += received
        if self.body_started is not None:
            self._body_fed += received  # may include the head that came with it: hence 2 x limit
        if self.head_started is not None and self._head_bytes > limit:
            self.reject(head_too_large("request head too large"))
        elif self.body_started is not None and self._body_fed - self.body_received > max(2 * limit, self.body_received):
            # Chunk framing and trailers beyond the data they carry (an unterminated trailer
            # line, millions of tiny chunks): bounded like a head.
            self.reject(Reject("chunk framing or trailer section too large"))

    def internal_error(self, exc: BaseException, stage: str) -> None:
        """A bug while handling this connection: answered 500 ``INTERNAL_ERROR``, then the connection closes.

        The current exchange answers (or is cut, if its response began); a failure before any
        exchange existed, or in a request pipelined behind the current one, is answered like a
        refusal, in order.
        """
        current = self.current
        new_message = self.head_started is not None or (self.parsing is not None and self.parsing is not current)
        if current is not None and not current.done and not new_message:
            self.pause_reading("rejected")
            self.parsing = None
            current.internal_error(exc, stage)
            return
        ids = self.parsing.head.ids if self.parsing is not None else None
        self.reject(Reject(f"internal error in {stage}", 500, "INTERNAL_ERROR", ids=ids, cause=exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        # This protocol is in reference cycles (its parser's callbacks, its exchanges) and waits
        # for the cyclic GC, often a full one; the transport must not wait with it: over TLS it
        # holds the event loop's SSL protocol, with a 256 KiB read buffer and OpenSSL's state.
        self.transport = None
        current, self.current = self.current, None
        if current is not None:
            current.on_client_lost()
        if self.parsing is not None and self.parsing is not current:
            self.parsing.on_client_lost()
        self.queue.clear()

    def pause_writing(self) -> None:
        self.write_paused_since = time.monotonic()
        if self.current is not None and self.current.upstream is not None:
            self.current.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused_since = None
        if self.current is not None and self.current.upstream is not None:
            self.current.upstream.resume_reading()

    # --- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.head_started = time.monotonic()
        self._url = b""
        self._headers = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if len(self._url) > self.ctx.limits.max_line_bytes:
            raise Reject("request target too long", 414, "URI_TOO_LONG")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.ctx.limits
        self._head_bytes += len(name) + len(value) + 4
        too_many = len(name) + len(value) > limits.max_line_bytes or len(self._headers) >= limits.max_headers
        if too_many or self._head_bytes > limits.max_head_bytes:
            if self.head_started is None:  # trailer fields, after the body: not the head
                raise Reject("trailer section too large")
            raise head_too_large("request head too large" if not too_many else "request header too large or too many headers")
        self._headers.append((name, strip_value(value), lower_name(name)))

    def on_headers_complete(self) -> None:
        self.requests += 1
        exchange = self._last = self._exchange(self._request_head())
        self._headers = []  # trailers, if any, are counted apart from the head
        self.head_started = None
        self.parsing = exchange
        if exchange.request_done:
            self.body_started = None
        else:
            self.body_started = time.monotonic()
            self.body_received = 0
            self._body_fed = 0
            if exchange.head.expect_continue and exchange.head.http11:
                self.write(CONTINUE_100)  # the agent answers the expectation; the app never sees it
        if self.current is None:
            self.current = exchange
            if exchange.head.local is None:
                self._starting = exchange  # begun when this packet is parsed (data_received)
        else:
            if len(self.queue) >= MAX_PIPELINED:
                raise Reject("too many pipelined requests", ids=exchange.head.ids)
            self.queue.append(exchange)
            self.pause_reading("pipeline")

    def _request_head(self) -> RequestHead:
        parser = self.parser
        head = parse_request_head(
            self.ctx.settings,
            method=parser.get_method(),
            target=self._url,
            version=parser.get_http_version(),
            headers=self._headers,
            upgrade=parser.should_upgrade(),
            keep_alive=parser.should_keep_alive() and not self.ctx.draining,
            trusted=self.trusted,
            tls=self.tls,
        )
        self.http11 = head.http11
        return head

    def _exchange(self, head: RequestHead) -> Exchange:
        ctx = self.ctx
        if head.local is not None:
            return Exchange(self, head, b"")
        try:
            request_head = upstream_request_head(
                head,
                ctx.settings,
                peer=self.peer,
                trusted=self.trusted,
                authority=ctx.upstream_authority,
                client_cert=self.client_cert.forwarded.encode() if self.client_cert is not None else None,
            )
        except Exception as exc:  # answered with the ids the request brought
            raise Reject("internal error building the upstream head", 500, "INTERNAL_ERROR", ids=head.ids, cause=exc) from exc
        return Exchange(self, head, request_head)

    def on_body(self, body: bytes) -> None:
        self.body_received += len(body)
        exchange = self.parsing
        if exchange is None:
            return
        if not exchange.began and exchange.body_bytes + len(body) > self.ctx.limits.max_body_bytes:
            # A pipelined request still waiting its turn: refused after the earlier responses.
            raise Reject("request body too large", 413, "PAYLOAD_TOO_LARGE", ids=exchange.head.ids)
        exchange.on_request_body(body)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        self.body_started = None
        if exchange is None:
            return
        exchange.on_request_complete()
        if exchange is self.current and exchange.head.local is not None and not exchange.done:
            exchange.begin()

    # --- refusals -------------------------------------------------------------------------

    def reject(self, exc: Reject) -> None:
        """A request the agent refuses: JSON error, then close.

        The error belongs to the message being parsed. When that is the current exchange (a bad
        body), it fails; when it is a later, pipelined one, the earlier requests are answered
        first and the error follows them.
        """
        self.pause_reading("rejected")
        parsing, self.parsing = self.parsing, None
        if parsing is not None and parsing is self._starting:
            self._starting = None  # refused before anything of it was forwarded
        if parsing is not None and parsing is self.current and not parsing.done:
            parsing.fail(exc.status, exc.code, close=True, reason=str(exc), exc=exc.cause)
            self._close_when_idle()
            return
        if parsing is not None and parsing in self.queue:
            self.queue.remove(parsing)
        if self.current is not None and not self.current.done:
            self._reject_after = exc
            return
        self._send_rejection(exc)

    def _send_rejection(self, exc: Reject) -> None:
        try:
            is_head = self.parser.get_method() == b"HEAD"
        except httptools.HttpParserError:
            is_head = False
        self.write(rejection(self.ctx, exc, peer=self.peer, is_head=is_head, https=self.tls))
        self.close()

    # --- plumbing used by exchanges --------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        elif not self.closed and self.transport is not None:
            self.transport.write(data)

    def cork(self) -> None:
        """Collect writes until ``uncork``: a response head and body go out in one send."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and not self.closed and self.transport is not None:
            self.transport.write(b"".join(corked) if len(corked) > 1 else corked[0])

    def close(self) -> None:
        self.uncork()
        if not self.closed and self.transport is not None:
            self.closed = True
            if "rejected" in self._paused and _can_write_eof(self.transport):
                # The client may still be sending the request we refused. Closing with unread
                # input makes the kernel send a reset, which can destroy our response before the
                # client reads it; so: send the response and FIN, discard what still arrives,
                # and close for good after LINGER_S (nginx's lingering_close).
                self.transport.write_eof()
                self._paused.clear()
                self.transport.resume_reading()
                asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
                return
            self.transport.close()  # after the write buffer is flushed

    def abort(self) -> None:
        self._corked = None
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def pause_reading(self, reason: str) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason in self._paused:
            self._paused.discard(reason)
            if not self._paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def _close_when_idle(self) -> None:
        if self.current is None or self.current.done:
            self.close()

    def exchange_done(self, exchange: Exchange, aborted: bool) -> None:
        if exchange is not self.current:
            return
        self.current = None
        if aborted:
            self.abort()
            return
        if self.closed:
            return
        if not exchange.keep_alive:
            self.close()
            return
        self.idle_since = time.monotonic()
        if self._reject_after is not None and not self.queue:
            exc, self._reject_after = self._reject_after, None
            self._send_rejection(exc)
            return
        if self.queue:
            nxt = self.queue.popleft()
            self.current = nxt
            if not self.queue:
                self.resume_reading("pipeline")
            if nxt.head.local is None or nxt.request_done:
                # On the next loop turn: an answer the agent makes at once (a health probe, a 503)
                # would finish inside this call and begin the next, one level deeper each time.
                asyncio.get_running_loop().call_soon(self._begin_queued, nxt)
            return
        self.resume_reading("pipeline")
        if exchange is self._upgrading:  # the app did not switch protocols: the connection goes on as HTTP
            self._resume_http()

    def _begin_queued(self, exchange: Exchange) -> None:
        if exchange is not self.current or exchange.done or self.closed:
            return
        try:
            exchange.begin()
        except Exception as exc:
            self.internal_error(exc, "begin")

    def _resume_http(self) -> None:
        rest, self._after_upgrade, self._upgrading = self._after_upgrade, b"", None
        self.parser = httptools.HttpRequestParser(self)  # llhttp cannot leave its upgrade state
        self.resume_reading("upgrade")
        if rest:
            self.data_received(rest)

    def hand_over(self) -> tuple[asyncio.Transport, bytes]:
        """For a tunnel: the transport, and the bytes that came after the upgrade request."""
        self.uncork()
        rest, self._after_upgrade, self._upgrading = self._after_upgrade, b"", None
        self.closed = True  # this protocol is done with the connection
        self.current = self._last = None
        self.ctx.connections.discard(self)
        assert self.transport is not None
        return self.transport, rest


def rejection(ctx: ProxyContext, exc: Reject, *, peer: str | None, is_head: bool, https: bool) -> bytes:
    """The answer to a request refused before it had an exchange: counted, logged, JSON.
    ``https``: the connection is the agent's own TLS (a trusted proxy's word is not parsed yet)."""
    if exc.ids is not None:
        request_id, trace_id = exc.ids.request_id, exc.ids.trace_id
    else:
        request_id, _, trace_id = new_ids()
    head, body, error_id = error_answer(ctx.settings, exc.status, exc.code, request_id=request_id, https=https, close=True)
    ctx.metrics.start()
    ctx.metrics.observe("OTHER", "", exc.status, 0.0)  # unparsed: no trustworthy method or path
    log.log(
        logging.ERROR if exc.cause is not None else logging.WARNING,
        "request rejected",
        exc_info=exc.cause,
        extra={
            "error_id": error_id,
            "error_code": exc.code,
            "status": exc.status,
            "reason": str(exc)[:200],
            "client_ip": peer,
            "request_id": request_id,
            "trace_id": trace_id,
        },
    )
    return head if is_head else head + body


# --- deadlines (checked by the listener's sweeper) ---------------------------------------


def sweep_connection(conn: ClientConnection, now: float) -> None:
    """Apply the agent's deadlines to one client connection (one sweeper for all, no timer each)."""
    limits = conn.ctx.limits
    if conn.closed:
        return
    if conn.head_started is not None and now - conn.head_started > limits.header_timeout_s:
        log.info("request head deadline passed: closing", extra={"client_ip": conn.peer})
        conn.abort()
    elif conn.body_started is not None and conn.parsing is not None:
        _sweep_body(conn, now, limits)
    elif conn.current is not None:
        _sweep_response(conn, conn.current, now, limits)
    elif conn.head_started is None and conn.parsing is None:
        # A connection that never sent a request gets the head deadline, not keep-alive's.
        idle_limit = limits.keepalive_timeout_s if conn.requests else limits.header_timeout_s
        if now - conn.idle_since > idle_limit:
            conn.close()


def _sweep_body(conn: ClientConnection, now: float, limits: ProxyLimits) -> None:
    """A body must keep moving (``proxy.body_timeout_s``) at ``proxy.min_body_rate_bytes_s``."""
    assert conn.body_started is not None and conn.parsing is not None
    elapsed = now - conn.body_started
    stalled = now - conn.last_progress > limits.body_timeout_s
    too_slow = elapsed > limits.body_timeout_s and conn.body_received / elapsed < limits.min_body_rate_bytes_s
    if not (stalled or too_slow):
        if conn.current is not None:
            _sweep_response(conn, conn.current, now, limits)
        return
    exchange = conn.parsing
    log.info(
        "request body too slow: closing",
        extra={"client_ip": conn.peer, "request_id": exchange.request_id, "trace_id": exchange.trace_id},
    )
    if exchange is conn.current and not exchange.response_started:
        exchange.fail(408, "REQUEST_TIMEOUT", close=True, reason="request body too slow")
        conn.close()
    else:
        conn.abort()


def _sweep_response(conn: ClientConnection, current: Exchange, now: float, limits: ProxyLimits) -> None:
    if conn.write_paused_since is not None:
        # The client stopped reading: the app is not slow, the client is. After
        # read_timeout_s the connection is cut, counted as the client's doing.
        if now - conn.write_paused_since > limits.read_timeout_s:
            log.info(
                "client stopped reading: closing",
                extra={"client_ip": conn.peer, "request_id": current.request_id, "trace_id": current.trace_id},
            )
            conn.abort()
            current.on_client_lost()
        return
    upstream = current.upstream
    if (
        upstream is not None
        and current.request_done
        and now - max(upstream.last_progress, conn.last_progress) > limits.read_timeout_s
    ):
        current.on_read_timeout()


def _can_write_eof(transport: asyncio.Transport) -> bool:
    try:
        return transport.can_write_eof()
    except (AttributeError, NotImplementedError):
        return False


class MainListener:
    """Owns the listening socket, the client connections and the sweeper."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConnection(self.ctx),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=tls,
            ssl_handshake_timeout=self.ctx.limits.header_timeout_s if tls is not None else None,
        )
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="main-listener-sweeper")
        server: Any = self.server  # uvloop's sockets are a list, typeshed says tuple (compiled code checks it)
        address = server.sockets[0].getsockname()
        return address[0], address[1]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_PERIOD_S)
            now = time.monotonic()
            for conn in list(self.ctx.connections):
                try:
                    sweep_connection(conn, now)
                except Exception as exc:  # one connection's bug must not stop every deadline
                    conn.internal_error(exc, "deadline sweep")
            for tunnel in list(self.ctx.tunnels):
                tunnel.sweep(now, self.ctx.limits.upgrade_idle_timeout_s)
            self.ctx.pool.sweep(now)

    async def close(self, shutdown_timeout_s: float) -> None:
        """Stop accepting, close idle connections, let in-flight exchanges finish (bounded).

        Tunnels get the WebSocket close handshake (1001 "going away") for at most
        ``CLOSE_HANDSHAKE_S`` within the shutdown timeout; whatever remains is then closed.
        """
        if self.server is not None:
            self.server.close()
        deadline = time.monotonic() + shutdown_timeout_s
        grace_s = min(CLOSE_HANDSHAKE_S, shutdown_timeout_s)
        while True:
            now = time.monotonic()
            for tunnel in list(self.ctx.tunnels):
                if tunnel.closing_deadline is None:
                    tunnel.begin_close(grace_s)
            for conn in list(self.ctx.connections):
                idle = conn.current is None and conn.parsing is None and conn.head_started is None
                # A connection accepted a moment ago may have its request on the way: it gets
                # NEW_CONNECTION_GRACE_S before it counts as idle.
                if idle and (conn.requests or now - conn.idle_since > NEW_CONNECTION_GRACE_S):
                    conn.close()
                elif conn.current is not None:
                    conn.current.close_after()
            if (not self.ctx.connections and not self.ctx.tunnels) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.ctx.connections):
            log.warning("request still running at shutdown deadline: aborted", extra={"client_ip": conn.peer})
            conn.abort()
        for tunnel in list(self.ctx.tunnels):
            tunnel.close("drain")
        self.ctx.closing = True
        self.ctx.pool.close()
        self.ctx.access_log.flush()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
