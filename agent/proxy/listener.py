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
import re
import time

import httptools

from agent.health.render import dumps, health_body, health_json_body, live_body, ready_body, startup_body
from agent.proxy.context import HEALTH, LIVE, READY, STARTUP, ProxyContext
from agent.proxy.exchange import Exchange
from agent.proxy.wire import CONTINUE_100, HOP_BY_HOP, REQUEST_REPLACED, connection_tokens, new_ids, status_line
from agent.tracecontext import parse_traceparent

log = logging.getLogger("agent.proxy")

MAX_PIPELINED = 1024  # bounded anyway: reading pauses once a request waits behind another
SWEEP_PERIOD_S = 0.25
# RFC 3986 host (reg-name or IP literal) with an optional port; empty is allowed on HTTP/1.0 only
# by absence, and an empty value is what RFC 9112 §3.2 allows for an authority-less target.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]{0,5})?")
NEW_CONNECTION_GRACE_S = 1.0
LINGER_S = 2.0


class Reject(Exception):
    def __init__(
        self,
        reason: str,
        status: int = 400,
        code: str = "BAD_REQUEST",
        extra: bytes = b"",
        request_id: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.extra = extra
        self.request_id = request_id  # a valid incoming id, kept on the error
        self.trace_id = trace_id


class ClientConnection(asyncio.Protocol):
    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: str | None = None
        self.trusted = False
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

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = peername[0] if isinstance(peername, tuple) else None
        self.trusted = self.ctx.is_trusted(self.peer)
        self.ctx.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_progress = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised; a Reject carries its own status and code.
            cause = exc.__context__
            self.reject(cause if isinstance(cause, Reject) else Reject(str(cause or exc)))
        except httptools.HttpParserUpgrade:
            # The request asked to switch protocols; it was forwarded as plain HTTP without
            # Upgrade (hop-by-hop), so the connection ends with its response.
            self.pause_reading("upgrade")
            for exchange in (self.current, *self.queue):
                if exchange is not None:
                    exchange.keep_alive = False
        except httptools.HttpParserError as exc:
            self.reject(Reject(str(exc) or type(exc).__name__))
        except Reject as exc:
            self.reject(exc)
        else:
            limit = self.ctx.limits.max_head_bytes
            if self.head_started is not None:
                # llhttp buffers a header field until its line ends: count raw bytes too, so an
                # unterminated field cannot grow past the head limit.
                self._head_bytes += len(data)
            if self.body_started is not None:
                self._body_fed += len(data)  # may include the head that came with it: hence 2 x limit
            if self.head_started is not None and self._head_bytes > limit:
                self.reject(Reject("request head too large"))
            elif self.body_started is not None and self._body_fed - self.body_received > max(2 * limit, self.body_received):
                # Chunk framing and trailers beyond the data they carry (an unterminated trailer
                # line, millions of tiny chunks): bounded like a head.
                self.reject(Reject("chunk framing or trailer section too large"))
        # Forwarding starts once the whole packet parsed: a bad chunk sent together with the
        # head means the app never sees the request at all.
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done and not self.closed and starting is self.current:
            starting.begin()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
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
            raise Reject("request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.ctx.limits
        self._head_bytes += len(name) + len(value) + 4
        if len(name) + len(value) > limits.max_line_bytes or len(self._headers) >= limits.max_headers:
            raise Reject("request header too large or too many headers")
        if self._head_bytes > limits.max_head_bytes:
            raise Reject("request head too large")
        self._headers.append((name, value.rstrip(b" \t"), name.lower()))

    def on_headers_complete(self) -> None:
        self.requests += 1
        exchange = self._build_exchange()
        self.head_started = None
        self.parsing = exchange
        if exchange.request_done:
            self.body_started = None
        else:
            self.body_started = time.monotonic()
            self.body_received = 0
            self._body_fed = 0
        if self.current is None:
            self.current = exchange
            if exchange.local is None:
                self._starting = exchange  # begun when this packet is parsed (data_received)
        else:
            if len(self.queue) >= MAX_PIPELINED:
                raise Reject("too many pipelined requests")
            self.queue.append(exchange)
            self.pause_reading("pipeline")

    def on_body(self, body: bytes) -> None:
        self.body_received += len(body)
        exchange = self.parsing
        if exchange is None:
            return
        if not exchange.began and exchange.body_bytes + len(body) > self.ctx.limits.max_body_bytes:
            # A pipelined request still waiting its turn: refused after the earlier responses.
            raise Reject(
                "request body too large", 413, "PAYLOAD_TOO_LARGE", request_id=exchange.request_id, trace_id=exchange.trace_id
            )
        exchange.on_request_body(body)

    def on_message_complete(self) -> None:
        exchange, self.parsing = self.parsing, None
        self.body_started = None
        if exchange is None:
            return
        exchange.on_request_complete()
        if exchange is self.current and exchange.local is not None and not exchange.done:
            exchange.begin()

    # --- request validation and the upstream request head ---------------------------------

    def _build_exchange(self) -> Exchange:
        ctx = self.ctx
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise Reject(f"unsupported HTTP version {version[:8]!r}")
        self.http11 = version == "1.1"
        method = parser.get_method()
        if method == b"CONNECT":
            raise Reject("CONNECT is not supported", 405, "METHOD_NOT_ALLOWED")
        url = self._url
        if not url.startswith(b"/") and not (method == b"OPTIONS" and url == b"*"):
            raise Reject("request target must be origin-form (/path?query)")

        host = request_id_in = traceparent_in = tracestate = xff = xfp = xfh = user_agent = accept = origin = None
        preflight = False
        hosts = te_count = 0
        content_length = -1
        expect_continue = False
        connection_values: list[bytes] = []
        te_value = b""
        for _, value, lower in self._headers:
            if lower == b"host":
                hosts += 1
                host = value
            elif lower == b"content-length":
                content_length = int(value)  # llhttp allows only 1*DIGIT and one field
            elif lower == b"transfer-encoding":
                te_count += 1
                te_value = value
            elif lower == b"connection":
                connection_values.append(value)
            elif lower == ctx.request_id_header:
                request_id_in = value
            elif lower == b"traceparent":
                traceparent_in = value
            elif lower == b"tracestate":
                tracestate = value
            elif lower == b"x-forwarded-for":
                xff = value if xff is None else xff + b", " + value
            elif lower == b"x-forwarded-proto":
                xfp = value
            elif lower == b"x-forwarded-host":
                xfh = value
            elif lower == b"user-agent":
                user_agent = value
            elif lower == b"accept":
                accept = value
            elif lower == b"origin":
                origin = value
            elif lower == b"access-control-request-method":
                preflight = method == b"OPTIONS"
            elif lower == b"expect":
                expect_continue = value.lower() == b"100-continue"
        incoming_trace_id = _valid_trace_id(traceparent_in)
        request_id, traceparent, trace_id = new_ids()
        if request_id_in is not None and ctx.request_id_pattern.fullmatch(request_id_in):
            request_id = request_id_in.decode("ascii", "replace")
        if incoming_trace_id is not None:
            trace_id = incoming_trace_id
            traceparent = traceparent_in.decode()  # type: ignore[union-attr]
        else:
            tracestate = None  # W3C: no tracestate without the traceparent it belongs to

        if hosts > 1 or (self.http11 and hosts == 0):
            raise Reject("exactly one Host header is required", request_id=request_id, trace_id=trace_id)
        if host is not None and not _HOST.fullmatch(host):
            raise Reject("Host must be uri-host[:port] (RFC 9112 §3.2)", request_id=request_id, trace_id=trace_id)
        chunked_in = te_count > 0
        if chunked_in and (te_count > 1 or te_value.strip().lower() != b"chunked" or not self.http11):
            raise Reject("only Transfer-Encoding: chunked is accepted, on HTTP/1.1", request_id=request_id, trace_id=trace_id)
        if parser.should_upgrade() and (chunked_in or content_length > 0):
            # llhttp does not parse the body of an upgrade request; forwarding its framing without
            # the body would leave the app waiting for bytes (or eat the next request).
            raise Reject("an Upgrade request cannot carry a body", request_id=request_id, trace_id=trace_id)
        if content_length > ctx.limits.max_body_bytes:
            raise Reject("request body too large", 413, "PAYLOAD_TOO_LARGE", request_id=request_id, trace_id=trace_id)
        has_body = chunked_in or content_length > 0
        keep_alive = parser.should_keep_alive()
        path = url.split(b"?", 1)[0]
        local = ctx.local_paths.get(path)
        if local is None and ctx.metrics_path is not None and path == ctx.metrics_path:
            local = "metrics"
        cors = ctx.cors_lines(origin) if ctx.cors_enabled else b""
        if preflight and ctx.cors_enabled:
            local = "preflight"  # answered by the agent, never forwarded
        https = (xfp or b"").lower() == b"https" if self.trusted else False

        exchange = Exchange(
            self,
            method=method,
            raw_path=url,
            request_id=request_id,
            trace_id=trace_id,
            request_head=b""
            if local
            else self._upstream_head(
                method,
                url,
                host,
                request_id,
                traceparent,
                tracestate,
                xff,
                xfp,
                xfh,
                connection_values,
                chunked_in,
                content_length,
            ),
            chunked_in=chunked_in,
            keep_alive=keep_alive and not self.ctx.draining,
            https=https,
            user_agent=user_agent or b"",
            local=local,
        )
        exchange.accept = accept or b""
        exchange.cors = cors
        if not has_body:
            exchange.request_done = True
        elif expect_continue and self.http11:
            self.write(CONTINUE_100)  # the agent answers the expectation; the app never sees it
        return exchange

    def _upstream_head(
        self,
        method: bytes,
        url: bytes,
        host: bytes | None,
        request_id: str,
        traceparent: str,
        tracestate: bytes | None,
        xff: bytes | None,
        xfp: bytes | None,
        xfh: bytes | None,
        connection_values: list[bytes],
        chunked_in: bool,
        content_length: int,
    ) -> bytes:
        ctx = self.ctx
        named = connection_tokens(connection_values) if connection_values else frozenset()
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, url, host or ctx.upstream_authority)]
        append = lines.append
        skip_trace = tracestate is None
        for name, value, lower in self._headers:
            # Hop-by-hop fields (and those named in Connection) go first, so a client can never
            # strip what the agent adds below.
            if lower in HOP_BY_HOP or lower in REQUEST_REPLACED or lower in named:
                continue
            if lower == ctx.request_id_header or lower == b"traceparent" or (skip_trace and lower == b"tracestate"):
                continue
            if not self.trusted and lower.startswith(b"x-forwarded-"):
                continue
            append(b"%s: %s\r\n" % (name, value))
        peer = (self.peer or "").encode()
        trusted = self.trusted
        forwarded_host = xfh if trusted and xfh else host
        append(
            b"X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n%s%s: %s\r\ntraceparent: %s\r\n"
            % (
                xff + b", " + peer if trusted and xff else peer,
                xfp if trusted and xfp else b"http",
                b"X-Forwarded-Host: %s\r\n" % forwarded_host if forwarded_host else b"",
                ctx.request_id_name,
                request_id.encode(),
                traceparent.encode(),
            )
        )
        if chunked_in:
            append(b"Transfer-Encoding: chunked\r\n")
        elif content_length >= 0:
            append(b"Content-Length: %d\r\n" % content_length)
        append(b"\r\n")
        return b"".join(lines)

    # --- responses the agent makes itself ---------------------------------------------------

    def serve_local(self, exchange: Exchange) -> None:
        ctx = self.ctx
        kind = exchange.local
        if kind == "preflight":
            self._serve_preflight(exchange)
            return
        if exchange.method not in (b"GET", b"HEAD"):
            exchange.fail(405, "METHOD_NOT_ALLOWED", extra=b"Allow: GET, HEAD\r\n")
            return
        content_type = b"application/json"
        monitor = ctx.monitor
        if kind == READY:
            status, body = ready_body(monitor.snapshot, monitor.draining)
        elif kind == LIVE:
            status, body = live_body(monitor.liveness_problem())
        elif kind == STARTUP:
            status, body = startup_body(monitor.snapshot)
        elif kind == HEALTH:
            if b"application/health+json" in exchange.accept:
                status, doc = health_json_body(
                    monitor.snapshot, detail=ctx.public_details, version=ctx.version, check_types=ctx.check_types
                )
                content_type = b"application/health+json"
            else:
                status, doc = health_body(
                    monitor.snapshot,
                    draining=monitor.draining,
                    detail=ctx.public_details,
                    version=ctx.version,
                    started_at=monitor.started_at,
                    now=time.time(),
                )
            body = dumps(doc)
        else:
            assert ctx.metrics_page is not None
            content_type, body = ctx.metrics_page(exchange.accept)
            status = 200
        keep = exchange.keep_alive and not ctx.draining
        exchange.keep_alive = keep
        response = ctx.local_response(
            status,
            body,
            request_id=exchange.request_id,
            content_type=content_type,
            close=not keep,
            head_only=exchange.is_head,
            extra=exchange.cors,
            https=exchange.https,
        )
        exchange.status = status
        exchange.response_started = True
        exchange.bytes_sent = len(body)
        self.write(response)
        exchange._finish()

    def _serve_preflight(self, exchange: Exchange) -> None:
        """CORS preflight: 204 with the allowed methods and headers when the origin is allowed."""
        ctx = self.ctx
        extra = exchange.cors + ctx.cors_preflight if exchange.cors else b""
        keep = exchange.keep_alive and not ctx.draining
        exchange.keep_alive = keep
        head = b"%s%s: %s\r\n%s%s%s\r\n" % (
            status_line(204),
            ctx.request_id_name,
            exchange.request_id.encode(),
            extra,
            ctx.security_lines(None, exchange.https),
            b"" if keep else b"Connection: close\r\n",
        )
        exchange.status = 204
        exchange.response_started = True
        self.write(head)
        exchange._finish()

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
            parsing.fail(exc.status, exc.code, close=True, reason=str(exc), extra=exc.extra)
            parsing.keep_alive = False
            self._close_when_idle()
            return
        if parsing is not None and parsing in self.queue:
            self.queue.remove(parsing)
        if self.current is not None and not self.current.done:
            self._reject_after = exc
            return
        self._send_rejection(exc)

    def _send_rejection(self, exc: Reject) -> None:
        request_id = exc.request_id or new_ids()[0]
        try:
            is_head = self.parser.get_method() == b"HEAD"
        except httptools.HttpParserError:
            is_head = False
        response, error_id = self.ctx.error_response(
            exc.status, exc.code, request_id=request_id, close=True, extra=exc.extra, head_only=is_head
        )
        self.ctx.metrics.start()
        self.ctx.metrics.observe("OTHER", "", exc.status, 0.0)  # unparsed: no trustworthy method or path
        log.warning(
            "request rejected",
            extra={
                "error_id": error_id,
                "error_code": exc.code,
                "status": exc.status,
                "reason": str(exc)[:200],
                "client_ip": self.peer,
                "request_id": request_id,
                "trace_id": exc.trace_id,
            },
        )
        self.write(response)
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
            if nxt.local is None or nxt.request_done:
                nxt.begin()
            return
        self.resume_reading("pipeline")

    # --- deadlines (called by the listener's sweeper) --------------------------------------

    def sweep(self, now: float) -> None:
        limits = self.ctx.limits
        if self.closed:
            return
        if self.head_started is not None and now - self.head_started > limits.header_timeout_s:
            log.info("request head deadline passed: closing", extra={"client_ip": self.peer})
            self.abort()
            return
        if self.body_started is not None and self.parsing is not None:
            elapsed = now - self.body_started
            stalled = now - self.last_progress > limits.body_timeout_s
            too_slow = elapsed > limits.body_timeout_s and self.body_received / elapsed < limits.min_body_rate_bytes_s
            if stalled or too_slow:
                exchange = self.parsing
                log.info(
                    "request body too slow: closing",
                    extra={"client_ip": self.peer, "request_id": exchange.request_id, "trace_id": exchange.trace_id},
                )
                if exchange is self.current and not exchange.response_started:
                    exchange.fail(408, "REQUEST_TIMEOUT", close=True, reason="request body too slow")
                    self.close()
                else:
                    self.abort()
                return
        current = self.current
        if current is not None and self.write_paused_since is not None:
            # The client stopped reading: the app is not slow, the client is. After
            # read_timeout_s the connection is cut, counted as the client's doing.
            if now - self.write_paused_since > limits.read_timeout_s:
                log.info(
                    "client stopped reading: closing",
                    extra={"client_ip": self.peer, "request_id": current.request_id, "trace_id": current.trace_id},
                )
                self.abort()
                current.on_client_lost()
            return
        if current is not None:
            upstream = current.upstream
            waiting = upstream is not None and current.request_done
            if waiting and now - max(upstream.last_progress, self.last_progress) > limits.read_timeout_s:  # type: ignore[union-attr]
                current.on_read_timeout()
            return
        if self.head_started is None and self.parsing is None and now - self.idle_since > limits.keepalive_timeout_s:
            self.close()


def _can_write_eof(transport: asyncio.Transport) -> bool:
    try:
        return transport.can_write_eof()
    except (AttributeError, NotImplementedError):
        return False


def _valid_trace_id(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_traceparent(value.decode("ascii"))
    except UnicodeDecodeError:
        return None


class MainListener:
    """Owns the listening socket, the client connections and the sweeper."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: ClientConnection(self.ctx), host, port, reuse_address=True, backlog=1024)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="main-listener-sweeper")
        address = self.server.sockets[0].getsockname()
        return address[0], address[1]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_PERIOD_S)
            now = time.monotonic()
            for conn in list(self.ctx.connections):
                conn.sweep(now)
            self.ctx.pool.sweep(now)

    async def close(self, shutdown_timeout_s: float) -> None:
        """Stop accepting, close idle connections, let in-flight exchanges finish (bounded)."""
        if self.server is not None:
            self.server.close()
        deadline = time.monotonic() + shutdown_timeout_s
        while True:
            now = time.monotonic()
            for conn in list(self.ctx.connections):
                idle = conn.current is None and conn.parsing is None and conn.head_started is None
                # A connection accepted a moment ago may have its request on the way: it gets
                # NEW_CONNECTION_GRACE_S before it counts as idle.
                if idle and (conn.requests or now - conn.idle_since > NEW_CONNECTION_GRACE_S):
                    conn.close()
                elif conn.current is not None:
                    conn.current.keep_alive = False
            if not self.ctx.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.ctx.connections):
            log.warning("request still running at shutdown deadline: aborted", extra={"client_ip": conn.peer})
            conn.abort()
        self.ctx.closing = True
        self.ctx.pool.close()
        self.ctx.access_log.flush()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
