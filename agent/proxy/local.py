"""The answers the main listener makes itself: health endpoints, ``/metrics``, CORS preflights.

Pure functions of the request and what the monitor last published (its snapshot): a probe never
reaches a check, the app or the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

from agent.health.policy import Snapshot
from agent.health.render import dumps, health_body, health_json_body, live_body, ready_body, startup_body
from agent.proxy.request_head import RequestHead
from agent.proxy.response_head import local_head
from agent.proxy.settings import HEALTH, LIVE, METRICS, PREFLIGHT, READY, ProxySettings
from agent.rules.security_headers import encode

MetricsPage = Callable[[bytes], tuple[bytes, bytes]]  # Accept -> (content type, body)


class HealthState(Protocol):
    """What the local answers read of ``agent.health.monitor.Monitor``."""

    snapshot: Snapshot
    draining: bool
    started_at: float

    def liveness_problem(self) -> str | None: ...


class LocalAnswer:
    __slots__ = ("body", "content_type", "error_code", "extra", "status")

    def __init__(
        self,
        status: int,
        content_type: bytes | None,
        body: bytes,
        extra: bytes,  # header lines beyond those every answer carries
        error_code: str | None = None,  # answered with the agent's JSON error instead
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.extra = extra
        self.error_code = error_code

    def head(self, settings: ProxySettings, request: RequestHead, *, close: bool) -> bytes:
        return local_head(
            settings,
            self.status,
            request_id=request.ids.request_id,
            https=request.https,
            close=close,
            content_type=self.content_type,
            content_length=len(self.body),
            extra=self.extra,
        )


def local_answer(settings: ProxySettings, head: RequestHead, state: HealthState, metrics_page: MetricsPage | None) -> LocalAnswer:
    """The answer for ``head.local``; a method other than GET/HEAD is refused (405)."""
    kind = head.local
    if kind == PREFLIGHT:
        return preflight_answer(settings, head)
    if head.method not in (b"GET", b"HEAD"):
        return LocalAnswer(405, None, b"", b"Allow: GET, HEAD\r\n", "METHOD_NOT_ALLOWED")
    if kind == METRICS:
        assert metrics_page is not None, "metrics served on the main listener without a page"
        content_type, body = metrics_page(head.accept)
        return LocalAnswer(200, content_type, body, head.cors)
    if kind == HEALTH:
        return _health(settings, head, state)
    if kind == READY:
        status, body = _READY.answer(state.snapshot, state.draining)
    elif kind == LIVE:
        status, body = live_body(state.liveness_problem())
    else:
        status, body = _STARTUP.answer(state.snapshot, False)
    return LocalAnswer(status, b"application/json", body, head.cors)


class SnapshotMemo:
    """The last answer made from a snapshot: probe after probe reads the same one (the monitor
    replaces it whole when a check changes), so the body is made once per snapshot."""

    __slots__ = ("_body", "_draining", "_make", "_snapshot", "_status")

    def __init__(self, make: Callable[[Snapshot, bool], tuple[int, bytes]]) -> None:
        self._make = make
        self._snapshot: Snapshot | None = None
        self._draining = False
        self._status = 0
        self._body = b""

    def answer(self, snapshot: Snapshot, draining: bool) -> tuple[int, bytes]:
        if snapshot is not self._snapshot or draining != self._draining:
            self._status, self._body = self._make(snapshot, draining)
            self._snapshot, self._draining = snapshot, draining
        return self._status, self._body


_READY: Final = SnapshotMemo(ready_body)
_STARTUP: Final = SnapshotMemo(lambda snapshot, _draining: startup_body(snapshot))


def _health(settings: ProxySettings, head: RequestHead, state: HealthState) -> LocalAnswer:
    if b"application/health+json" in head.accept:
        status, doc = health_json_body(
            state.snapshot, detail=settings.public_details, version=settings.version, check_types=settings.check_types
        )
        return LocalAnswer(status, b"application/health+json", dumps(doc), head.cors)
    status, doc = health_body(
        state.snapshot,
        draining=state.draining,
        detail=settings.public_details,
        version=settings.version,
        started_at=state.started_at,
        now=time.time(),
    )
    return LocalAnswer(status, b"application/json", dumps(doc), head.cors)


def preflight_answer(settings: ProxySettings, head: RequestHead) -> LocalAnswer:
    """CORS preflight: 204 with the allowed methods and headers when the origin is allowed."""
    origin = None if head.origin is None else head.origin.decode("latin-1")
    return LocalAnswer(204, None, b"", encode(settings.cors.preflight_headers(origin)))
