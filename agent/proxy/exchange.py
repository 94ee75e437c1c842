"""One request/response cycle through the proxy, driven by callbacks from both legs.

Bodies stream both ways with backpressure: when the receiving side's write buffer fills, reading
from the sending side pauses. The client gets the agent's JSON error only while no response byte
has been sent; after that, a failure cuts the client connection (a clean but short response
would lie about the body).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import orjson

from agent.logs import rfc3339
from agent.proxy.access_log import LOGGER_NAME as ACCESS_LOGGER
from agent.proxy.augment import augment_error_body, is_json
from agent.proxy.upstream import PoolExhausted, UpstreamConnection, UpstreamProtocolError
from agent.proxy.wire import HOP_BY_HOP, IDEMPOTENT_METHODS, LAST_CHUNK, chunk, connection_tokens, is_token, new_ids, status_line

if TYPE_CHECKING:
    from agent.proxy.context import ProxyContext
    from agent.proxy.listener import ClientConnection

log = logging.getLogger("agent.proxy")

Headers = list[tuple[bytes, bytes, bytes]]  # (name, value, lower-case name)

MAX_PENDING_BODY_BYTES = 256 * 1024
FORWARD_AFTER_BYTES = 64 * 1024
MAX_AUGMENT_BYTES = 64 * 1024


class Exchange:
    __slots__ = (
        "accept",
        "augmenting",
        "began",
        "body_bytes",
        "bytes_sent",
        "chunked_in",
        "chunked_out",
        "client",
        "cors",
        "ctx",
        "discarding",
        "done",
        "eof_body",
        "error_id",
        "forwarding",
        "held",
        "https",
        "in_flight",
        "is_head",
        "keep_alive",
        "local",
        "method",
        "path",
        "pending",
        "pending_bytes",
        "raw_path",
        "request_done",
        "request_head",
        "request_id",
        "response_started",
        "retried",
        "started",
        "status",
        "trace_id",
        "upstream",
        "upstream_started",
        "user_agent",
    )

    def __init__(
        self,
        client: ClientConnection,
        *,
        method: bytes,
        raw_path: bytes,
        request_id: str,
        trace_id: str,
        request_head: bytes,
        chunked_in: bool,
        keep_alive: bool,
        https: bool,
        user_agent: bytes,
        local: str | None,
    ) -> None:
        self.client = client
        self.ctx: ProxyContext = client.ctx
        self.method = method
        self.raw_path = raw_path
        self.path = raw_path.split(b"?", 1)[0]
        self.request_id = request_id
        self.trace_id = trace_id
        self.request_head = request_head
        self.chunked_in = chunked_in
        self.keep_alive = keep_alive
        self.https = https
        self.user_agent = user_agent
        self.local = local
        self.is_head = method == b"HEAD"
        self.started = time.perf_counter()
        self.upstream_started = 0.0
        self.upstream: UpstreamConnection | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.body_bytes = 0
        self.bytes_sent = 0
        self.request_done = False
        self.response_started = False
        self.chunked_out = False
        self.augmenting: list[bytes] | None = None
        self.held: tuple[int, bytes, Headers] | None = None
        self.status = 0
        self.retried = False
        self.done = False
        self.began = False
        self.accept = b""
        self.cors = b""
        self.eof_body = False
        self.discarding = False
        self.error_id: str | None = None
        self.in_flight = False  # counted in ctx.in_flight
        self.forwarding = False  # the upstream connection was asked for

    # --- request side (called by the client connection) ------------------------------------

    def begin(self) -> None:
        """This exchange is now the connection's current one: answer it or start forwarding."""
        if self.began:
            return
        self.began = True
        ctx = self.ctx
        ctx.metrics.start()  # every request the main listener answers is counted, probes included
        if self.local is not None:
            self.client.serve_local(self)
            return
        if ctx.in_flight >= ctx.limits.max_in_flight:
            self.fail(503, "OVERLOADED", extra=b"Retry-After: 1\r\n", close=not self.request_done)
            return
        ctx.in_flight += 1
        self.in_flight = True
        # Like nginx's request buffering, but bounded: the app is contacted once the body is
        # complete or FORWARD_AFTER_BYTES of it arrived, so a client trickling a body cannot
        # hold one of the app's connections (its body deadline cuts it first).
        if self.request_done or self.pending_bytes >= FORWARD_AFTER_BYTES:
            self._forward()

    def _forward(self) -> None:
        self.forwarding = True
        self.upstream_started = time.perf_counter()
        conn = self.ctx.pool.take_idle()
        if conn is not None:
            self._attach(conn)
        else:
            asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            conn = await self.ctx.pool.acquire()
        except PoolExhausted:
            self.ctx.metrics.upstream_error("connect")
            self.fail(503, "OVERLOADED", extra=b"Retry-After: 1\r\n", reason="upstream pool exhausted")
            return
        except (OSError, TimeoutError) as exc:
            self.ctx.metrics.upstream_error("connect")
            self.fail(502, "UPSTREAM_UNAVAILABLE", reason=f"connect: {type(exc).__name__}")
            return
        if self.done:  # the client went away while we connected
            self.ctx.pool.release(conn)
            return
        self._attach(conn)

    def _attach(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        if self.pending:
            data = self.request_head + b"".join(self.pending)
            self.pending = []
            self.pending_bytes = 0
            self.client.resume_reading("body")
        else:
            data = self.request_head
        conn.start(self, data)

    def on_request_body(self, data: bytes) -> None:
        if self.done:
            return
        self.body_bytes += len(data)
        if self.body_bytes > self.ctx.limits.max_body_bytes:
            self.fail(413, "PAYLOAD_TOO_LARGE", close=True)
            return
        framed = chunk(data) if self.chunked_in else data
        if self.upstream is not None:
            self.upstream.write(framed)
        elif self.local is None:
            self.pending.append(framed)
            self.pending_bytes += len(framed)
            if self.pending_bytes > MAX_PENDING_BODY_BYTES:
                self.client.pause_reading("body")
            if self.in_flight and not self.forwarding and self.pending_bytes >= FORWARD_AFTER_BYTES:
                self._forward()

    def on_request_complete(self) -> None:
        self.request_done = True
        if self.done or self.local is not None:
            return
        if self.chunked_in:
            if self.upstream is not None:
                self.upstream.write(LAST_CHUNK)
            else:
                self.pending.append(LAST_CHUNK)
        if self.in_flight and not self.forwarding:
            self._forward()

    # --- response side (called by the upstream connection) ---------------------------------

    def on_response_head(self, status: int, reason: bytes, headers: Headers, framed: bool) -> bool:
        """Send (or hold) the response head; True when no body follows (HEAD).

        ``headers`` are (name, value, lower-case name); ``framed``: Content-Length or
        Transfer-Encoding present (else the body runs until the app closes the connection).
        """
        self.status = status
        ctx = self.ctx
        self.eof_body = not framed and not self.is_head and status not in (204, 304)
        if status >= 400:
            self.error_id = _error_id_from_upstream(headers)
        augmentable = ctx.augment_errors and status >= 400 and not self.is_head and status not in (204, 304)
        if augmentable and (status >= 500 or is_json(headers)):
            self.held = (status, reason, headers)
            # A non-JSON 5xx body (an HTML traceback page, say) is replaced whatever its size:
            # it is discarded as it arrives instead of being held.
            self.augmenting = [] if is_json(headers) else None
            self.discarding = self.augmenting is None
            return False
        self._send_head(status, reason, headers)
        return self.is_head

    def _send_head(self, status: int, reason: bytes, headers: Headers) -> None:
        ctx = self.ctx
        dropped = ctx.dropped_response_headers  # fingerprints, our own ids
        watched = ctx.watched_response_headers  # names whose presence changes what the agent adds
        present: set[bytes] = set()
        lines = []
        lowers = []
        content_length = None
        chunked = False
        connection = None
        for name, value, lower in headers:
            if lower in HOP_BY_HOP:
                if lower == b"content-length":
                    content_length = value
                elif lower == b"transfer-encoding":
                    chunked = True
                elif lower == b"connection":
                    connection = [value] if connection is None else [*connection, value]
                continue
            if lower in dropped:
                continue
            if lower in watched:
                present.add(lower)
            lines.append(b"%s: %s\r\n" % (name, value))
            lowers.append(lower)
        if connection is not None:  # names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1)
            named = connection_tokens(connection)
            if named & set(lowers):
                lines = [line for line, lower in zip(lines, lowers, strict=True) if lower not in named]
                present -= named
        no_body = self.is_head or status in (204, 304)
        if chunked and not no_body and self.client.http11:
            framing = b"Transfer-Encoding: chunked\r\n"
            self.chunked_out = True
        elif chunked and not no_body:
            framing = b""  # an HTTP/1.0 client: the body ends when the connection closes (RFC 9112 §6.1)
            self.keep_alive = False
        elif content_length is not None:
            framing = b"Content-Length: %s\r\n" % content_length
        elif no_body:
            framing = b""
        elif self.client.http11:
            framing = b"Transfer-Encoding: chunked\r\n"  # close-delimited upstream body, re-framed
            self.chunked_out = True
        else:
            framing = b""
            self.keep_alive = False
        if self.error_id is not None:
            lines.append(b"X-Error-ID: %s\r\n" % self.error_id.encode())
        keep = self.keep_alive and not ctx.draining and self.request_done
        if not keep:
            self.keep_alive = False
        head = b"%s%s%s%s: %s\r\n%s%s\r\n" % (
            status_line(status, reason),
            b"".join(lines),
            framing,
            ctx.request_id_name,
            self.request_id.encode(),
            ctx.security_lines(present, self.https) + (self.cors if b"access-control-allow-origin" not in present else b""),
            b"" if keep else b"Connection: close\r\n",
        )
        self.response_started = True
        self.client.write(head)

    def on_response_body(self, data: bytes) -> None:
        if self.discarding:
            return
        if self.augmenting is not None:
            self.augmenting.append(data)
            if sum(map(len, self.augmenting)) > MAX_AUGMENT_BYTES:
                self._stop_augmenting()
            return
        self.bytes_sent += len(data)
        self.client.write(chunk(data) if self.chunked_out else data)

    def _stop_augmenting(self) -> None:
        """Too big to rewrite: send what was held and stream the rest as it comes."""
        assert self.held is not None and self.augmenting is not None
        status, reason, headers = self.held
        held_body, self.augmenting, self.held = b"".join(self.augmenting), None, None
        self._send_head(status, reason, headers)
        self.on_response_body(held_body)

    def on_response_complete(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None:
        if self.held is not None:
            self._finish_augmented()
        elif self.chunked_out:
            self.client.write(LAST_CHUNK)
        self.upstream = None
        # After a HEAD response an app may still send a body it should not have: never reuse.
        if upstream_keep_alive and self.request_done and not self.ctx.closing and not self.is_head:
            self.ctx.pool.release(conn)
        else:
            conn.abort()
        if not self.request_done:
            self.keep_alive = False  # unread request body on the client connection: close it
        self._finish()

    def _finish_augmented(self) -> None:
        assert self.held is not None
        status, reason, headers = self.held
        body, self.augmenting, self.held = b"".join(self.augmenting or ()), None, None
        self.discarding = False
        error_id = self.error_id or _error_id_from_upstream(headers)
        new_body = augment_error_body(status, headers, body, error_id=error_id, request_id=self.request_id)
        if new_body is None and status < 500:  # a 4xx we cannot read (encoded): pass it on as it is
            self._send_head(
                status,
                reason,
                [h for h in headers if h[2] not in (b"transfer-encoding", b"content-length")]
                + [(b"Content-Length", b"%d" % len(body), b"content-length")],
            )
            self.bytes_sent += len(body)
            self.client.write(body)
            return
        if new_body is None:  # not JSON: replace a 5xx body with the agent's own error
            log.info(
                "upstream error body replaced",
                extra={"status": status, "error_id": error_id, "request_id": self.request_id, "trace_id": self.trace_id},
            )
            new_body = _upstream_error_json(error_id, self.request_id)
        kept = [h for h in headers if h[2] not in (b"content-type", b"content-length", b"transfer-encoding", b"content-encoding")]
        kept.append((b"Content-Type", b"application/json", b"content-type"))
        kept.append((b"Content-Length", b"%d" % len(new_body), b"content-length"))
        self._send_head(status, b"", kept)
        self.bytes_sent += len(new_body)
        self.client.write(new_body)

    # --- failures --------------------------------------------------------------------------

    def on_upstream_lost(self, conn: UpstreamConnection) -> None:
        """The app closed the connection before the response completed."""
        if self.done:
            return
        self.upstream = None
        if self.status and self.eof_body:  # a close-delimited body ends with the connection
            if self.held is not None:
                self._finish_augmented()
            elif self.chunked_out:
                self.client.write(LAST_CHUNK)
            if not self.client.http11 or not self.chunked_out:
                self.keep_alive = False
            self._finish()
            return
        if self.response_started:
            self.ctx.metrics.upstream_error("reset")
            log.warning(
                "upstream closed mid-response; cutting the client connection",
                extra={"request_id": self.request_id, "trace_id": self.trace_id, "bytes_sent": self.bytes_sent},
            )
            self.client.abort()
            self._finish(aborted=True)
            return
        reused = conn.responses > 0
        if reused and not self.retried and self.method in IDEMPOTENT_METHODS and self.body_bytes == 0 and self.request_done:
            # A pooled connection the app closed as we reused it: nothing can have been processed
            # twice for an idempotent request without a body (RFC 9112 §9.3.1.1).
            self.retried = True
            asyncio.get_running_loop().create_task(self._connect())
            return
        self.ctx.metrics.upstream_error("reset")
        self.fail(502, "UPSTREAM_UNAVAILABLE", reason="reset")

    def on_upstream_error(self, exc: UpstreamProtocolError) -> None:
        self.upstream = None
        self.ctx.metrics.upstream_error("protocol")
        if self.response_started:
            self.client.abort()
            self._finish(aborted=True)
            return
        self.fail(502, "UPSTREAM_UNAVAILABLE", reason=f"protocol: {exc}")

    def on_read_timeout(self) -> None:
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        self.ctx.metrics.upstream_error("timeout")
        if self.response_started:
            self.client.abort()
            self._finish(aborted=True)
            return
        self.fail(504, "UPSTREAM_TIMEOUT", reason="timeout")

    def on_client_lost(self) -> None:
        if self.upstream is not None:
            self.upstream.abort()  # never return a half-read response to the pool
            self.upstream = None
        if not self.done:
            self.status = self.status if self.response_started else 499
            self._finish(aborted=True)

    def fail(self, status: int, error_code: str, *, extra: bytes = b"", close: bool = False, reason: str | None = None) -> None:
        """Answer with the agent's JSON error (only possible before any response byte was sent)."""
        if self.done:
            return
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None
        if self.response_started:
            self.client.abort()
            self._finish(aborted=True)
            return
        close = close or not self.request_done or not self.keep_alive or self.ctx.draining
        response, error_id = self.ctx.error_response(
            status,
            error_code,
            request_id=self.request_id,
            close=close,
            extra=extra + self.cors,
            head_only=self.is_head,
            https=self.https,
        )
        level = logging.ERROR if status >= 500 and status != 503 else logging.WARNING
        log.log(
            level,
            "request failed",
            extra={
                "error_id": error_id,
                "error_code": error_code,
                "status": status,
                "reason": reason,
                "method": self.method.decode("latin-1"),
                "path": self.path[:512].decode("latin-1"),
                "request_id": self.request_id,
                "trace_id": self.trace_id,
            },
        )
        self.status = status
        self.response_started = True
        if close:
            self.keep_alive = False
        self.bytes_sent += len(response)
        self.client.write(response)
        self._finish()

    def _finish(self, *, aborted: bool = False) -> None:
        if self.done:
            return
        self.done = True
        ctx = self.ctx
        now = time.perf_counter()
        duration = now - self.started
        if self.in_flight:
            ctx.in_flight -= 1
        method = self.method.decode("latin-1")
        path = self.path.decode("latin-1")
        if self.began:
            ctx.metrics.observe(method, path, self.status, duration)
        if ctx.access_log.enabled and self.path not in ctx.skip_log_paths:
            event = {
                "timestamp": rfc3339(time.time()),
                "level": "INFO",
                "logger": ACCESS_LOGGER,
                "message": "request completed",
                "request_id": self.request_id,
                "trace_id": self.trace_id,
                "method": method[:16],
                "path": path[:512],
                "status": self.status,
                "duration_ms": round(duration * 1000, 3),
                "bytes_sent": self.bytes_sent,
                "client_ip": self.client.peer,
                "user_agent": self.user_agent[:512].decode("latin-1"),
                "upstream_ms": round((now - self.upstream_started) * 1000, 3) if self.upstream_started else None,
            }
            if aborted:
                event["aborted"] = True
            ctx.access_log.write(event)
        self.client.exchange_done(self, aborted)

    def pause_client_reading(self) -> None:
        self.client.pause_reading("upstream")

    def resume_client_reading(self) -> None:
        self.client.resume_reading("upstream")


def _error_id_from_upstream(headers: Headers) -> str:
    """Keep an ``X-Error-ID`` the app already chose when it is a clean token, else make one."""
    for _, value, lower in headers:
        if lower == b"x-error-id" and 0 < len(value) <= 128 and is_token(value):
            return value.decode()
    return new_ids()[0]


def _upstream_error_json(error_id: str, request_id: str) -> bytes:
    return orjson.dumps(
        {
            "error_id": error_id,
            "error_code": "UPSTREAM_ERROR",
            "message": "The upstream service failed.",
            "timestamp": rfc3339(time.time()),
            "request_id": request_id,
        }
    )
