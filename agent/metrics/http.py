"""HTTP server metrics for the main listener: requests, latency, in-flight and upstream errors.

The caller (the proxy path) calls ``start()`` when a request arrives and ``observe()`` exactly
once when it is done, and ``upstream_error()`` when the upstream fails. Label children are cached
per ``(method, route, status)`` so that after the first request of a kind, ``observe()`` is two
dict lookups and three lock-protected additions.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent.metrics.routes import RouteFolder

# prometheus_client's defaults, which are also OpenTelemetry's explicit boundaries for
# http.server.request.duration (semantic-conventions, http-metrics.md).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# RFC 9110 §9 methods plus PATCH (RFC 5789); anything else is "OTHER" so a client cannot mint
# label values (OpenTelemetry records those as "_OTHER"; SPEC §6 names it "OTHER").
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
OTHER_METHOD = "OTHER"
UPSTREAM_ERROR_REASONS = ("connect", "timeout", "reset", "protocol")


class HttpMetrics:
    """Metric families registered on ``registry``; one instance per application."""

    __slots__ = (
        "_children",
        "_dec_in_flight",
        "_inc_in_flight",
        "_methods",
        "_upstream_errors",
        "duration",
        "in_flight",
        "requests",
        "routes",
        "upstream_errors",
    )

    def __init__(self, registry: CollectorRegistry, routes: RouteFolder) -> None:
        self.routes = routes
        self.requests = Counter(
            "agent_http_requests_total",
            "HTTP requests served by the main listener, by method, route template and status code.",
            ("method", "route", "status"),
            registry=registry,
        )
        self.duration = Histogram(
            "agent_http_request_duration_seconds",
            "Time from receiving a request to finishing its response, by method and route template.",
            ("method", "route"),
            buckets=DURATION_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "agent_http_requests_in_flight", "Requests the main listener is handling right now.", registry=registry
        )
        self.upstream_errors = Counter(
            "agent_upstream_errors_total",
            "Failures talking to the upstream app, by reason (connect, timeout, reset, protocol).",
            ("reason",),
            registry=registry,
        )
        # Every reason exists from the start, so rate() and increase() see the first error.
        self._upstream_errors = {reason: self.upstream_errors.labels(reason) for reason in UPSTREAM_ERROR_REASONS}
        self._methods = {method: method for method in KNOWN_METHODS}
        # (method, route, status) -> the bound inc/observe of its label children.
        self._children: dict[tuple[str, str, int], tuple[Callable[[], None], Callable[[float], None]]] = {}
        self._inc_in_flight = self.in_flight.inc
        self._dec_in_flight = self.in_flight.dec

    def start(self) -> None:
        """A request arrived (in-flight + 1). Pair every call with one ``observe()``."""
        self._inc_in_flight()

    def observe(self, method: str, raw_path: str, status: int, duration_s: float) -> None:
        """A request finished: in-flight - 1, count it and record its duration."""
        self._dec_in_flight()
        method = self._methods.get(method, OTHER_METHOD)
        route = self.routes.fold(raw_path)
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)).inc,
                self.duration.labels(method, route).observe,
            )
        children[0]()
        children[1](duration_s)

    def upstream_error(self, reason: str) -> None:
        """Count one upstream failure; ``reason`` is one of ``UPSTREAM_ERROR_REASONS``."""
        child = self._upstream_errors.get(reason)
        if child is None:
            raise ValueError(f"unknown upstream error reason {reason!r}; expected one of {UPSTREAM_ERROR_REASONS}")
        child.inc()
