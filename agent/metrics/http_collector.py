"""The collector that turns :class:`~agent.metrics.http.HttpMetrics`' plain numbers into metric
families at scrape time.

Kept apart from ``agent.metrics.http`` on purpose: that module is compiled (mypyc), and this class
subclasses prometheus_client's ``Collector``, a Python class a compiled module cannot safely
derive from (mypyc makes it a non-native class; its attribute lookups crashed the interpreter).
It runs once per scrape, not per request, so pure Python costs nothing that matters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from agent.metrics.http import DURATION_BUCKETS_S, Exemplars

if TYPE_CHECKING:
    from agent.metrics.http import HttpMetrics


class HttpCollector(Collector):
    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        yield from self._families(0, {}, {}, {})
        yield from _tunnel_families(0, {}, {})

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        yield from self._families(*self._metrics.snapshot())
        yield from _tunnel_families(*self._metrics.tunnel_snapshot())

    @staticmethod
    def _families(
        in_flight: int,
        requests: dict[tuple[str, str, int], int],
        durations: dict[tuple[str, str], list[float]],
        upstream_errors: dict[str, int],
        exemplars: Exemplars | None = None,
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        total = CounterMetricFamily(
            "agent_http_requests",
            "HTTP requests served by the main listener, by method, route template and status code.",
            labels=("method", "route", "status"),
        )
        for (method, route, status), count in requests.items():
            total.add_metric((method, route, str(status)), count)
        yield total
        histogram = HistogramMetricFamily(
            "agent_http_request_duration_seconds",
            "Time from receiving a request to finishing its response, by method and route template.",
            labels=("method", "route"),
        )
        for (method, route), series in durations.items():
            kept = (exemplars or {}).get((method, route), {})
            cumulative = 0.0
            buckets: list[Any] = []
            for i, (bound, in_bucket) in enumerate(zip((*map(str, DURATION_BUCKETS_S), "+Inf"), series[:-1], strict=True)):
                cumulative += in_bucket
                if i in kept:
                    (trace_id, span_id), value, at = kept[i]
                    buckets.append((bound, cumulative, Exemplar({"trace_id": trace_id, "span_id": span_id}, value, at)))
                else:
                    buckets.append((bound, cumulative))
            histogram.add_metric((method, route), buckets, series[-1])
        yield histogram
        yield GaugeMetricFamily(
            "agent_http_requests_in_flight", "Requests the main listener is handling right now.", value=in_flight
        )
        errors = CounterMetricFamily(
            "agent_upstream_errors",
            "Failures talking to the upstream app, by reason (connect, timeout, reset, protocol).",
            labels=("reason",),
        )
        for reason, count in upstream_errors.items():
            errors.add_metric((reason,), count)
        yield errors


def _tunnel_families(
    open_now: int, upgrades: dict[int, int], bytes_total: dict[str, int]
) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    yield GaugeMetricFamily("agent_tunnels_open", "Upgraded connections (WebSocket) open right now.", value=open_now)
    answered = CounterMetricFamily(
        "agent_upgrades", "Upgrade requests by the status they were answered with (101: tunnel opened).", labels=("status",)
    )
    for status, count in sorted(upgrades.items()):
        answered.add_metric((str(status),), count)
    yield answered
    relayed = CounterMetricFamily("agent_tunnel_bytes", "Bytes relayed through tunnels, by direction.", labels=("direction",))
    for direction, count in bytes_total.items():
        relayed.add_metric((direction,), count)
    yield relayed
