"""One request/response cycle through the proxy, driven by callbacks from both legs.

Bodies stream both ways with backpressure: when the receiving side's write buffer fills, reading
from the sending side pauses. The client gets the agent's JSON error only while no response byte
has been sent; after that, a failure cuts the client connection (a clean but short response
would lie about the body). :meth:`Exchange.answer` is the one way an answer the agent makes
itself (health, metrics, preflight, errors) goes out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Final

from agent.proxy.augment import HeldError, is_json
from agent.proxy.local import local_answer
from agent.proxy.request_head import Headers, RequestHead
from agent.proxy.response_head import error_answer, proxied_head, switching_head
from agent.proxy.spans import finished_request
from agent.proxy.tunnel import Tunnel
from agent.proxy.upstream import PoolExhausted, UpstreamConnection, UpstreamProtocolError, failure_reason
from agent.proxy.wire import IDEMPOTENT_METHODS, LAST_CHUNK, chunk, is_token
from agent.rules.access import access_event
from agent.rules.ids import new_id

if TYPE_CHECKING:
    from agent.proxy.context import ProxyContext
    from agent.proxy.listener import ClientConnection

log = logging.getLogger("agent.proxy")

MAX_PENDING_BODY_BYTES: Final = 256 * 1024
FORWARD_AFTER_BYTES: Final = 64 * 1024
RETRY_AFTER: Final = b"Retry-After: 1\r\n"


class Exchange:
    # fmt: off
    __slots__ = (
        "began", "body_bytes", "bytes_sent", "chunked_out", "client", "ctx", "done", "eof_body", "error_code", "error_id",
        "forwarding", "head", "held", "in_flight", "keep_alive", "pending", "pending_bytes", "request_done",
        "request_head", "response_started", "retried", "started", "status", "upstream", "upstream_started",
    )
    # fmt: on

    def __init__(self, client: ClientConnection, head: RequestHead, request_head: bytes) -> None:
        self.client = client
        self.ctx: ProxyContext = client.ctx
        self.head = head
        self.request_head = request_head  # what the app is sent (empty for local answers)
        self.keep_alive = head.keep_alive
        self.request_done = not head.has_body
        self.started = time.perf_counter()
        self.upstream_started = 0.0
        self.upstream: UpstreamConnection | None = None
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.body_bytes = 0
        self.bytes_sent = 0
        self.response_started = False
        self.chunked_out = False
        self.held: HeldError | None = None  # an error response being made consistent
        self.status = 0
        self.retried = False
        self.done = False
        self.began = False
        self.eof_body = False
        self.error_id: str | None = None
        self.error_code: str | None = None  # the agent's own error, when it answered with one
        self.in_flight = False  # counted in ctx.in_flight
        self.forwarding = False  # the upstream connection was asked for

    @property
    def request_id(self) -> str:
        return self.head.ids.request_id

    @property
    def trace_id(self) -> str:
        return self.head.ids.trace_id

    # --- request side (called by the client connection) ------------------------------------

    def begin(self) -> None:
        """This exchange is now the connection's current one: answer it or start forwarding."""
        if self.began:
            return
        self.began = True
        ctx = self.ctx
        ctx.metrics.start()  # every request the main listener answers is counted, probes included
        if self.head.local is not None:
            self._answer_locally()
            return
        over = ctx.in_flight >= ctx.limits.max_in_flight
        if over or (self.head.upgrade is not None and len(ctx.tunnels) >= ctx.limits.max_upgraded):
            self.fail(503, "OVERLOADED", extra=RETRY_AFTER, close=not self.request_done)
            return
        ctx.in_flight += 1
        self.in_flight = True
        # Like nginx's request buffering, but bounded: the app is contacted once the body is
        # complete or FORWARD_AFTER_BYTES of it arrived, so a client trickling a body cannot
        # hold one of the app's connections (its body deadline cuts it first).
        if self.request_done or self.pending_bytes >= FORWARD_AFTER_BYTES:
            self._forward()

    def _answer_locally(self) -> None:
        ctx = self.ctx
        answer = local_answer(ctx.settings, self.head, ctx.state, ctx.metrics_page)
        if answer.error_code is not None:
            self.fail(answer.status, answer.error_code, extra=answer.extra)
            return
        close = not self.keep_alive or ctx.draining
        self.answer(answer.status, answer.head(ctx.settings, self.head, close=close), answer.body, close=close)

    def close_after(self) -> None:
        """The client connection closes once this exchange's response is sent."""
        self.keep_alive = False

    def answer(self, status: int, head: bytes, body: bytes, *, close: bool) -> None:
        """Send a whole answer the agent made (no body after HEAD) and finish the exchange."""
        self.status = status
        self.response_started = True
        if close:
            self.keep_alive = False
        if self.head.is_head:
            body = b""
        self.bytes_sent += len(body)
        self.client.write(head + body if body else head)
        self._finish()

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
            self.fail(503, "OVERLOADED", extra=RETRY_AFTER, reason="upstream pool exhausted")
            return
        except (OSError, TimeoutError) as exc:
            self.ctx.metrics.upstream_error("connect")
            self.fail(502, "UPSTREAM_UNAVAILABLE", reason=f"connect: {failure_reason(exc)}")
            return
        except Exception as exc:  # a bug in the agent, not the app's doing
            self.internal_error(exc, "connect")
            return
        if self.done:  # the client went away while we connected
            self.ctx.pool.release(conn)
            return
        try:
            self._attach(conn)
        except Exception as exc:
            conn.abort()
            self.internal_error(exc, "connect")

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
        framed = chunk(data) if self.head.chunked_in else data
        if self.upstream is not None:
            self.upstream.write(framed)
        elif self.head.local is None:
            self.pending.append(framed)
            self.pending_bytes += len(framed)
            if self.pending_bytes > MAX_PENDING_BODY_BYTES:
                self.client.pause_reading("body")
            if self.in_flight and not self.forwarding and self.pending_bytes >= FORWARD_AFTER_BYTES:
                self._forward()

    def on_request_complete(self) -> None:
        self.request_done = True
        if self.done or self.head.local is not None:
            return
        if self.head.chunked_in:
            if self.upstream is not None:
                self.upstream.write(LAST_CHUNK)
            else:
                self.pending.append(LAST_CHUNK)
        if self.in_flight and not self.forwarding:
            self._forward()

    # --- response side (called by the upstream connection) ---------------------------------

    def on_response_head(self, status: int, headers: Headers, framed: bool) -> bool:
        """Send (or hold) the response head; True when no body follows (HEAD).

        ``framed``: Content-Length or Transfer-Encoding present (else the body runs until the
        app closes the connection).
        """
        self.status = status
        is_head = self.head.is_head
        self.eof_body = not framed and not is_head and status not in (204, 304)
        if status >= 400:
            self.error_id = _error_id_from_upstream(headers)
        augmentable = self.ctx.settings.augment_errors and status >= 400 and not is_head and status not in (204, 304)
        if augmentable and (status >= 500 or is_json(headers)):
            self.held = HeldError(status, headers)
            return False
        self._send_head(status, headers)
        return is_head

    def _send_head(self, status: int, headers: Headers) -> None:
        keep = self.keep_alive and not self.ctx.draining and self.request_done
        head, framing = proxied_head(self.ctx.settings, status, headers, self.head, error_id=self.error_id, keep_alive=keep)
        self.chunked_out = framing.chunked
        if not keep or framing.close:
            self.keep_alive = False
        self.response_started = True
        self.client.write(head)

    def switch_protocols(self, conn: UpstreamConnection, headers: Headers, from_upstream: bytes) -> None:
        """The app answered 101: relay it, then the two connections become a tunnel."""
        ctx = self.ctx
        head = self.head
        self.status = 101
        self.response_started = True
        self.upstream = None
        self.client.write(switching_head(ctx.settings, headers, head))
        client_transport, from_client = self.client.hand_over()
        tunnel = Tunnel.for_request(ctx, head, client_ip=self.client.peer, started=self.started)
        self._finish()
        tunnel.start(client_transport, conn.hand_over(), from_client, from_upstream)

    def on_response_body(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            if not held.add(data):  # too big to rewrite: send what was held, stream the rest
                self.held = None
                self._send_head(held.status, held.headers)
                self.on_response_body(held.body())
            return
        self.bytes_sent += len(data)
        self.client.write(chunk(data) if self.chunked_out else data)

    def on_response_complete(self, conn: UpstreamConnection, upstream_keep_alive: bool) -> None:
        if self.held is not None:
            self._finish_held()
        elif self.chunked_out:
            self.client.write(LAST_CHUNK)
        self.upstream = None
        # After a HEAD response an app may still send a body it should not have: never reuse.
        if upstream_keep_alive and self.request_done and not self.ctx.closing and not self.head.is_head:
            self.ctx.pool.release(conn)
        else:
            conn.abort()
        if not self.request_done:
            self.keep_alive = False  # unread request body on the client connection: close it
        self._finish()

    def _finish_held(self) -> None:
        held, self.held = self.held, None
        assert held is not None
        error_id = self.error_id or _error_id_from_upstream(held.headers)
        headers, body, replaced = held.rewritten(error_id=error_id, request_id=self.request_id)
        if replaced:
            log.info(
                "upstream error body replaced",
                extra={"status": held.status, "error_id": error_id, "request_id": self.request_id, "trace_id": self.trace_id},
            )
        self._send_head(held.status, headers)
        self.bytes_sent += len(body)
        self.client.write(body)

    # --- failures --------------------------------------------------------------------------

    def on_upstream_lost(self, conn: UpstreamConnection) -> None:
        """The app closed the connection before the response completed."""
        if self.done:
            return
        self.upstream = None
        if self.status and self.eof_body:  # a close-delimited body ends with the connection
            if self.held is not None:
                self._finish_held()
            elif self.chunked_out:
                self.client.write(LAST_CHUNK)
            if not self.head.http11 or not self.chunked_out:
                self.keep_alive = False
            self._finish()
            return
        if self.response_started:
            self.ctx.metrics.upstream_error("reset")
            log.warning(
                "upstream closed mid-response; cutting the client connection",
                extra={"request_id": self.request_id, "trace_id": self.trace_id, "bytes_sent": self.bytes_sent},
            )
            self._cut()
            return
        reused = conn.responses > 0
        if reused and not self.retried and self.head.method in IDEMPOTENT_METHODS and self.body_bytes == 0 and self.request_done:
            # A pooled connection the app closed as we reused it: nothing can have been processed
            # twice for an idempotent request without a body (RFC 9112 §9.3.1.1).
            self.retried = True
            asyncio.get_running_loop().create_task(self._connect())
            return
        self.ctx.metrics.upstream_error("reset")
        self.fail(502, "UPSTREAM_UNAVAILABLE", reason="reset" if conn.tls_error is None else f"reset: {conn.tls_error}")

    def on_upstream_error(self, exc: UpstreamProtocolError) -> None:
        self._upstream_failed("protocol", 502, "UPSTREAM_UNAVAILABLE", f"protocol: {exc}")

    def on_read_timeout(self) -> None:
        self._upstream_failed("timeout", 504, "UPSTREAM_TIMEOUT", "timeout")

    def _upstream_failed(self, kind: str, status: int, code: str, reason: str) -> None:
        self._drop_upstream()
        self.ctx.metrics.upstream_error(kind)
        if self.response_started:
            self._cut()
        else:
            self.fail(status, code, reason=reason)

    def on_client_lost(self) -> None:
        self._drop_upstream()  # never return a half-read response to the pool
        if not self.done:
            self.status = self.status if self.response_started else 499
            self._finish(aborted=True)

    def internal_error(self, exc: BaseException, stage: str) -> None:
        """A bug in the agent: 500 ``INTERNAL_ERROR`` if nothing was sent yet, else the connection is cut.

        Either way the in-flight slot and the upstream connection are released and the client
        connection closes after the answer; the traceback is logged at ERROR with the error id.
        """
        if self.done:  # the answer went out whole; what failed came after it
            log.error("internal error after the response", exc_info=exc, extra={"stage": stage, **_log_fields(self)})
            self.client.close()
            return
        self.keep_alive = False
        self.fail(500, "INTERNAL_ERROR", close=True, reason=f"internal error in {stage}", exc=exc)

    def fail(
        self,
        status: int,
        error_code: str,
        *,
        extra: bytes = b"",
        close: bool = False,
        reason: str | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """Answer with the agent's JSON error (only possible before any response byte was sent)."""
        if self.done:
            return
        self._drop_upstream()
        if self.response_started:
            if exc is not None:
                log.error("internal error after the response began", exc_info=exc, extra=_log_fields(self))
            self._cut()
            return
        ctx = self.ctx
        close = close or not self.request_done or not self.keep_alive or ctx.draining
        head, body, error_id = error_answer(
            ctx.settings,
            status,
            error_code,
            request_id=self.request_id,
            https=self.head.https,
            close=close,
            extra=extra + self.head.cors,
        )
        self.error_code = error_code
        level = logging.ERROR if status >= 500 and status != 503 else logging.WARNING
        fields = {"error_id": error_id, "error_code": error_code, "status": status, "reason": reason, **_log_fields(self)}
        log.log(level, "request failed", exc_info=exc, extra=fields)
        self.answer(status, head, body, close=close)

    def _drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.abort()
            self.upstream = None

    def _cut(self) -> None:
        """A response already under way cannot become an error: the client connection is cut."""
        self.client.abort()
        self._finish(aborted=True)

    def _finish(self, *, aborted: bool = False) -> None:
        if self.done:
            return
        self.done = True
        ctx = self.ctx
        if self.in_flight:
            self.in_flight = False
            ctx.in_flight -= 1
        _report(self, aborted)
        self.client.exchange_done(self, aborted)

    def pause_client_reading(self) -> None:
        self.client.pause_reading("upstream")

    def resume_client_reading(self) -> None:
        self.client.resume_reading("upstream")


def _report(exchange: Exchange, aborted: bool) -> None:
    """The finished exchange counted in the metrics and written to the access log."""
    ctx = exchange.ctx
    now = time.perf_counter()
    duration = now - exchange.started
    head = exchange.head
    method = head.method.decode("latin-1")
    path = head.path.decode("latin-1")
    traced = head.sampled and exchange.status != 101 and (head.local is None or ctx.settings.tracing.trace_local)  # type: ignore[union-attr]
    if exchange.began:
        exemplar = (head.ids.trace_id, head.ids.span_id) if traced else None
        ctx.metrics.observe(method, path, exchange.status, duration, exemplar)
        if head.upgrade is not None:
            ctx.metrics.upgraded(exchange.status)
    if traced and ctx.tracer is not None:
        _record_span(exchange, now)
    if exchange.status != 101 and ctx.access_log.enabled and head.path not in ctx.settings.skip_log_paths:
        ctx.access_log.write(
            access_event(
                request_id=head.ids.request_id,
                trace_id=head.ids.trace_id,
                method=method,
                path=path,
                status=exchange.status,
                duration_s=duration,
                bytes_sent=exchange.bytes_sent,
                client_ip=exchange.client.peer,
                user_agent=head.user_agent[:512].decode("latin-1"),
                upstream_s=(now - exchange.upstream_started) if exchange.upstream_started else None,
                aborted=aborted,
                client_cert_subject=exchange.client.client_cert.subject if exchange.client.client_cert is not None else None,
            )
        )


def _record_span(exchange: Exchange, now: float) -> None:
    ctx = exchange.ctx
    assert ctx.tracer is not None
    ctx.tracer.record(
        finished_request(
            exchange.head,
            route=ctx.metrics.route(exchange.head.path.decode("latin-1")),
            status=exchange.status,
            started=exchange.started,
            ended=now,
            upstream_started=exchange.upstream_started,
            client_ip=exchange.client.peer,
            error_type=exchange.error_code,
            trusted=exchange.client.trusted,
        )
    )


def _log_fields(exchange: Exchange) -> dict[str, str]:
    head = exchange.head
    return {
        "method": head.method.decode("latin-1"),
        "path": head.path[:512].decode("latin-1"),
        "request_id": head.ids.request_id,
        "trace_id": head.ids.trace_id,
    }


def _error_id_from_upstream(headers: Headers) -> str:
    """Keep an ``X-Error-ID`` the app already chose when it is a clean token, else make one."""
    for _, value, lower in headers:
        if lower == b"x-error-id" and 0 < len(value) <= 128 and is_token(value):
            return value.decode()
    return new_id()
