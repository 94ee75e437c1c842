"""HTTP server metrics for the main listener: requests, latency, in-flight and upstream errors.

The caller (the proxy path) calls ``start()`` when a request arrives and ``observe()`` exactly
once when it is done, and ``upstream_error()`` when the upstream fails. The hot path only adds to
plain Python numbers held in dicts (no locks, no label objects: the event loop is the only writer);
a collector turns them into metric families at scrape time. A scrape may run in a worker thread:
it copies each dict in one C-level call, which the GIL makes atomic, so it never sees a dict
change size under it.
"""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import CollectorRegistry

from agent.metrics.routes import RouteFolder

# prometheus_client's defaults, which are also OpenTelemetry's explicit boundaries for
# http.server.request.duration (semantic-conventions, http-metrics.md).
DURATION_BUCKETS_S: Final[tuple[float, ...]] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

# RFC 9110 §9 methods plus PATCH (RFC 5789); anything else is "OTHER" so a client cannot mint
# label values (OpenTelemetry records those as "_OTHER"; SPEC §6 names it "OTHER").
KNOWN_METHODS: Final[tuple[str, ...]] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE")
OTHER_METHOD: Final = "OTHER"
UPSTREAM_ERROR_REASONS: Final[tuple[str, ...]] = ("connect", "timeout", "reset", "protocol")
TUNNEL_DIRECTIONS: Final[tuple[str, ...]] = ("client_to_upstream", "upstream_to_client")
Exemplars = dict[tuple[str, str], dict[int, tuple[tuple[str, str], float, float]]]


def bucket_index(duration_s: float) -> int:
    """The first bucket whose bound is at or above ``duration_s`` (``le`` is inclusive), else +Inf's.

    A loop, not ``bisect``: compiled, the bounds stay unboxed, and most requests stop at the first.
    """
    for index, bound in enumerate(DURATION_BUCKETS_S):
        if duration_s <= bound:
            return index
    return len(DURATION_BUCKETS_S)


class HttpMetrics:
    """The main listener's request metrics, registered on ``registry`` as one collector."""

    __slots__ = (
        "_durations",
        "_exemplars",
        "_methods",
        "_requests",
        "in_flight",
        "routes",
        "tunnel_bytes_total",
        "tunnels_open",
        "upgrades",
        "upstream_errors",
    )

    def __init__(self, registry: CollectorRegistry, routes: RouteFolder) -> None:
        self.routes = routes
        self.in_flight = 0
        # (method, route, status) -> count
        self._requests: dict[tuple[str, str, int], int] = {}
        # (method, route) -> [count per bucket (non-cumulative, last = +Inf), sum of durations]
        self._durations: dict[tuple[str, str], list[float]] = {}
        # Every reason exists from the start, so rate() and increase() see the first error.
        self.upstream_errors = dict.fromkeys(UPSTREAM_ERROR_REASONS, 0)
        self._methods = {method: method for method in KNOWN_METHODS}
        self.tunnels_open = 0
        # (method, route) -> {bucket index: ((trace id, span id), duration, unix time)}, latest wins
        self._exemplars: dict[tuple[str, str], dict[int, tuple[tuple[str, str], float, float]]] = {}
        self.upgrades: dict[int, int] = {101: 0}  # answers to upgrade requests, by status
        self.tunnel_bytes_total = dict.fromkeys(TUNNEL_DIRECTIONS, 0)
        from agent.metrics.http_collector import HttpCollector  # pure Python: it subclasses prometheus_client's

        registry.register(HttpCollector(self))

    def start(self) -> None:
        """A request arrived (in-flight + 1). Pair every call with one ``observe()``."""
        self.in_flight += 1

    def route(self, raw_path: str) -> str:
        """The bounded route label of a path (what ``http.route`` says on a span)."""
        return self.routes.fold(raw_path)

    def observe(
        self, method: str, raw_path: str, status: int, duration_s: float, exemplar: tuple[str, str] | None = None
    ) -> None:
        """A request finished: in-flight - 1, count it and record its duration.

        ``exemplar``: (trace id, span id) of a traced request, kept as its bucket's exemplar
        (OpenMetrics exposition only).
        """
        self.in_flight -= 1
        method = self._methods.get(method, OTHER_METHOD)
        route = self.routes.fold(raw_path)
        key = (method, route, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        series = self._durations.get((method, route))
        if series is None:
            series = self._durations[(method, route)] = [0.0] * (len(DURATION_BUCKETS_S) + 2)
        bucket = bucket_index(duration_s)
        series[bucket] += 1
        series[-1] += duration_s
        if exemplar is not None:
            self._exemplars.setdefault((method, route), {})[bucket] = (exemplar, duration_s, time.time())

    def upstream_error(self, reason: str) -> None:
        """Count one upstream failure; ``reason`` is one of ``UPSTREAM_ERROR_REASONS``."""
        if reason not in self.upstream_errors:
            raise ValueError(f"unknown upstream error reason {reason!r}; expected one of {UPSTREAM_ERROR_REASONS}")
        self.upstream_errors[reason] += 1

    def upgraded(self, status: int) -> None:
        """An upgrade request was answered with ``status`` (101: a tunnel opened)."""
        self.upgrades[status] = self.upgrades.get(status, 0) + 1

    def tunnel_opened(self) -> None:
        self.tunnels_open += 1

    def tunnel_closed(self) -> None:
        self.tunnels_open -= 1

    def tunnel_bytes(self, direction: str, n: int) -> None:
        self.tunnel_bytes_total[direction] += n

    def tunnel_snapshot(self) -> tuple[int, dict[int, int], dict[str, int]]:
        return self.tunnels_open, dict(self.upgrades), dict(self.tunnel_bytes_total)

    def snapshot(
        self,
    ) -> tuple[int, dict[tuple[str, str, int], int], dict[tuple[str, str], list[float]], dict[str, int], Exemplars]:
        """Consistent-enough copies for a scrape (each dict copied in one atomic step)."""
        durations = {key: list(series) for key, series in list(self._durations.items())}
        exemplars = {key: dict(kept) for key, kept in list(self._exemplars.items())}
        return self.in_flight, dict(self._requests), durations, dict(self.upstream_errors), exemplars
