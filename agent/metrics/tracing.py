"""Span export counters, read from the export queue at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.tracing import Tracer


class TracingCollector(Collector):
    def __init__(self, tracer: Tracer) -> None:
        self._queue = tracer.queue

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        queue = self._queue
        yield CounterMetricFamily("agent_tracing_spans_exported", "Spans the collector accepted.", value=queue.exported)
        dropped = CounterMetricFamily(
            "agent_tracing_spans_dropped",
            "Spans lost: queue_full (tracing.max_queue reached) or export_failed (the collector refused or was unreachable).",
            labels=("reason",),
        )
        dropped.add_metric(("queue_full",), queue.dropped)
        dropped.add_metric(("export_failed",), queue.failed)
        yield dropped
        yield GaugeMetricFamily("agent_tracing_queue_spans", "Spans waiting for export.", value=queue.pending)
