"""A custom collector that turns the monitor's latest snapshot into metric families at scrape time.

``collect()`` only reads attributes of the monitor (the single writer swaps the snapshot whole):
a scrape never runs a check and never awaits I/O, so scraping during a database outage is as
cheap as scraping a healthy agent (SPEC §6, STYLE rule 3).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.checks.base import Status
from agent.health.policy import Snapshot, is_ready

STATUSES = tuple(str(status) for status in Status)

# Observations that become gauges: check type -> (observation key, metric name, help).
OBSERVATION_GAUGES: Mapping[str, tuple[tuple[str, str, str], ...]] = {
    "postgres": (
        (
            "connections_used_ratio",
            "agent_postgres_connections_used_ratio",
            "Connections in use over max_connections, from the latest postgres check run.",
        ),
        (
            "in_recovery",
            "agent_postgres_in_recovery",
            "1 when the server is a standby (pg_is_in_recovery()), from the latest postgres check run.",
        ),
    ),
    "disk": (("free_ratio", "agent_disk_free_ratio", "Free space over total space at the checked path, from the latest run."),),
    "memory": (("used_ratio", "agent_memory_used_ratio", "Memory used over the container (or host) limit."),),
}


class MonitorView(Protocol):
    """What the collector reads from the monitor (``agent.health.monitor.Monitor`` has all of it)."""

    snapshot: Snapshot
    draining: bool
    loop_lag_s: float


class HealthCollector(Collector):
    def __init__(self, monitor: MonitorView, check_types: Mapping[str, str]) -> None:
        self._monitor = monitor
        self._check_types = dict(check_types)

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Names only, so registering never calls ``collect()`` and ``name[]`` filtering works."""
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        monitor = self._monitor
        snapshot = monitor.snapshot  # one read: every family below describes the same instant
        draining = monitor.draining
        families = self._families()
        up, status, duration, last_success, runs, ready, draining_family, loop_lag = families[:8]
        observations = {name: family for family, name in zip(families[8:], self._observation_names(), strict=True)}
        for state in snapshot.checks:
            name = state.name
            up.add_metric([name], 1.0 if state.is_up else 0.0)
            current = str(state.status)
            for status_value in STATUSES:
                status.add_metric([name, status_value], 1.0 if status_value == current else 0.0)
            if state.latency_s is not None:
                duration.add_metric([name], state.latency_s)
            if state.last_success_at is not None:
                last_success.add_metric([name], state.last_success_at)
            for result, count in zip(STATUSES, state.runs_by_result, strict=True):
                runs.add_metric([name, result], float(count))
            for key, metric_name, _ in OBSERVATION_GAUGES.get(self._check_types.get(name, ""), ()):
                observed = state.observations.get(key)
                if isinstance(observed, bool | int | float):
                    observations[metric_name].add_metric([name], float(observed))
        ready.add_metric([], 1.0 if is_ready(snapshot, draining) else 0.0)
        draining_family.add_metric([], 1.0 if draining else 0.0)
        loop_lag.add_metric([], monitor.loop_lag_s)
        yield from families[:8]
        yield from (family for family in families[8:] if family.samples)  # only the check types configured

    def _observation_names(self) -> list[str]:
        return [metric for gauges in OBSERVATION_GAUGES.values() for _, metric, _ in gauges]

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily("agent_check_up", "1 when the check's status is pass or warn, 0 when fail.", labels=["check"]),
            GaugeMetricFamily(
                "agent_check_status",
                "1 on the check's current status (pass, warn, fail), 0 on the others.",
                labels=["check", "status"],
            ),
            GaugeMetricFamily("agent_check_duration_seconds", "How long the check's latest run took.", labels=["check"]),
            GaugeMetricFamily(
                "agent_check_last_success_timestamp_seconds",
                "Unix time of the check's latest run that passed or warned.",
                labels=["check"],
            ),
            CounterMetricFamily(
                "agent_check_runs",
                "Completed runs of the check since the agent started, by their own result.",
                labels=["check", "result"],
            ),
            GaugeMetricFamily("agent_ready", "1 when /health/ready answers 200: started, not draining, critical checks up."),
            GaugeMetricFamily("agent_draining", "1 while the agent is draining (after SIGTERM or POST /admin/drain)."),
            GaugeMetricFamily("agent_event_loop_lag_seconds", "How late the monitor's last 250 ms timer fired."),
        ]
        for gauges in OBSERVATION_GAUGES.values():
            families.extend(GaugeMetricFamily(metric, help_text, labels=["check"]) for _, metric, help_text in gauges)
        return families
