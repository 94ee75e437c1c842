"""TLS metrics, read from the listeners' certificate state at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.tls import TlsListener


class TlsCollector(Collector):
    """Served certificates' expiry, reloads, and failed handshakes by reason, per TLS listener."""

    def __init__(self, listeners: Iterable[TlsListener]) -> None:
        self._listeners = tuple(listeners)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        expiry = GaugeMetricFamily(
            "agent_tls_certificate_expiry_timestamp_seconds",
            "Unix time the certificate a TLS listener serves expires (notAfter).",
            labels=("listener",),
        )
        reloads = CounterMetricFamily(
            "agent_tls_reloads", "Certificates loaded again after their files changed.", labels=("listener",)
        )
        failures = CounterMetricFamily(
            "agent_tls_reload_failures",
            "Changed certificate files refused (unparseable, key mismatch, expired); the previous pair stays in use.",
            labels=("listener",),
        )
        handshakes = CounterMetricFamily(
            "agent_tls_handshake_errors", "TLS handshakes that failed, by reason.", labels=("listener", "reason")
        )
        for listener in self._listeners:
            expiry.add_metric((listener.name,), listener.certificate.not_after)
            reloads.add_metric((listener.name,), listener.reloads)
            failures.add_metric((listener.name,), listener.reload_failures)
            for reason, count in listener.stats.failures.items():
                handshakes.add_metric((listener.name, reason), count)
        yield from (expiry, reloads, failures, handshakes)
