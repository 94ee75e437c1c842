"""The health collector turns hand-built snapshots into metrics; a scrape never runs a check."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from prometheus_client import CollectorRegistry

from agent.checks.base import Status, failed, passed, warned
from agent.config import build_config
from agent.health.monitor import Monitor, ScheduledCheck
from agent.health.policy import CheckState, Snapshot, apply_result, initial_state
from agent.metrics import create_registry
from agent.metrics.health import HealthCollector
from agent.secrets import Redactor

T0 = 1_700_000_000.0


@dataclass
class FakeMonitor:
    snapshot: Snapshot
    draining: bool = False
    loop_lag_s: float = 0.0
    started_at: float = T0


def run(state: CheckState, result, now: float) -> CheckState:
    return apply_result(state, replace(result, latency_s=0.0123), failure_threshold=2, success_threshold=1, now=now)


def registry_for(monitor, types) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(HealthCollector(monitor, types))
    return registry


TYPES = {"database": "postgres", "disk": "disk", "memory": "memory", "upstream": "http"}


def test_pending_checks_are_down_and_fail():
    snapshot = Snapshot(checks=(initial_state("database", True, T0),), started=False, taken_at=T0)
    registry = registry_for(FakeMonitor(snapshot), TYPES)
    value = registry.get_sample_value
    assert value("agent_check_up", {"check": "database"}) == 0
    assert value("agent_check_status", {"check": "database", "status": "fail"}) == 1
    assert value("agent_check_status", {"check": "database", "status": "pass"}) == 0
    assert value("agent_check_status", {"check": "database", "status": "warn"}) == 0
    assert value("agent_check_runs_total", {"check": "database", "result": "fail"}) == 0
    assert value("agent_check_duration_seconds", {"check": "database"}) is None
    assert value("agent_check_last_success_timestamp_seconds", {"check": "database"}) is None
    assert value("agent_ready") == 0
    assert value("agent_draining") == 0


def test_states_observations_and_agent_gauges():
    db = run(
        initial_state("database", True, T0), passed(connections_used_ratio=0.25, in_recovery=False, server_version="16"), T0 + 1
    )
    disk = run(initial_state("disk", False, T0), warned("low", free_ratio=0.08), T0 + 2)
    memory = run(initial_state("memory", False, T0), passed(used_ratio=0.5), T0 + 3)
    upstream = run(initial_state("upstream", False, T0), failed("refused"), T0 + 4)
    snapshot = Snapshot(checks=(db, disk, memory, upstream), started=True, taken_at=T0 + 4)
    monitor = FakeMonitor(snapshot, loop_lag_s=0.004)
    registry = registry_for(monitor, TYPES)
    value = registry.get_sample_value
    assert value("agent_check_up", {"check": "database"}) == 1
    assert value("agent_check_up", {"check": "disk"}) == 1  # warn is up
    assert value("agent_check_status", {"check": "disk", "status": "warn"}) == 1
    assert value("agent_check_up", {"check": "upstream"}) == 0
    assert value("agent_check_duration_seconds", {"check": "database"}) == pytest.approx(0.0123)
    assert value("agent_check_last_success_timestamp_seconds", {"check": "database"}) == T0 + 1
    assert value("agent_check_last_success_timestamp_seconds", {"check": "disk"}) == T0 + 2
    assert value("agent_check_last_success_timestamp_seconds", {"check": "upstream"}) is None
    assert value("agent_check_runs_total", {"check": "upstream", "result": "fail"}) == 1
    assert value("agent_check_runs_total", {"check": "upstream", "result": "pass"}) == 0
    assert value("agent_check_runs_total", {"check": "disk", "result": "warn"}) == 1
    assert value("agent_postgres_connections_used_ratio", {"check": "database"}) == 0.25
    assert value("agent_postgres_in_recovery", {"check": "database"}) == 0
    assert value("agent_disk_free_ratio", {"check": "disk"}) == 0.08
    assert value("agent_memory_used_ratio", {"check": "memory"}) == 0.5
    assert value("agent_ready") == 1
    assert value("agent_event_loop_lag_seconds") == 0.004

    monitor.draining = True
    assert value("agent_ready") == 0
    assert value("agent_draining") == 1


def test_last_success_survives_failed_runs():
    state = run(initial_state("database", True, T0), passed(), T0 + 1)
    monitor = FakeMonitor(Snapshot(checks=(state,), started=True, taken_at=T0 + 1))
    registry = registry_for(monitor, TYPES)
    assert registry.get_sample_value("agent_check_last_success_timestamp_seconds", {"check": "database"}) == T0 + 1
    for i in range(2, 5):
        state = run(state, failed("down"), T0 + i)
    # Not scraped in between: the time comes from the state, not from what a scrape saw.
    monitor.snapshot = Snapshot(checks=(state,), started=True, taken_at=T0 + 4)
    assert state.status is Status.FAIL
    assert registry.get_sample_value("agent_check_last_success_timestamp_seconds", {"check": "database"}) == T0 + 1
    assert registry.get_sample_value("agent_check_runs_total", {"check": "database", "result": "fail"}) == 3
    assert registry.get_sample_value("agent_check_runs_total", {"check": "database", "result": "pass"}) == 1


def test_observations_of_a_failed_run_disappear():
    state = run(initial_state("database", True, T0), passed(connections_used_ratio=0.5), T0 + 1)
    monitor = FakeMonitor(Snapshot(checks=(state,), started=True, taken_at=T0 + 1))
    registry = registry_for(monitor, TYPES)
    assert registry.get_sample_value("agent_postgres_connections_used_ratio", {"check": "database"}) == 0.5
    monitor.snapshot = Snapshot(checks=(run(state, failed("refused"), T0 + 2),), started=True, taken_at=T0 + 2)
    assert registry.get_sample_value("agent_postgres_connections_used_ratio", {"check": "database"}) is None


def test_observation_families_only_for_configured_types():
    snapshot = Snapshot(checks=(run(initial_state("upstream", True, T0), passed(), T0 + 1),), started=True, taken_at=T0)
    names = {family.name for family in registry_for(FakeMonitor(snapshot), TYPES).collect()}
    assert "agent_check_up" in names
    assert not any(name.startswith(("agent_postgres", "agent_disk", "agent_memory")) for name in names)


async def test_scrape_never_runs_a_check_and_registering_does_not_collect():
    calls = 0

    async def check():
        nonlocal calls
        calls += 1
        return passed()

    config = build_config(
        {"checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}, "db": {"type": "tcp", "port": 5432}}}, {}, "test"
    )
    monitor = Monitor([ScheduledCheck(config.checks[0], check)], Redactor(()), max_loop_lag_s=1.0, default_interval_s=5)

    class Exploding(HealthCollector):
        def collect(self):  # registration must use describe(), never collect()
            raise AssertionError("collect() called at registration")

    CollectorRegistry().register(Exploding(monitor, {}))
    registry, _ = create_registry(config, monitor)
    for _ in range(20):
        registry.get_sample_value("agent_check_up", {"check": "db"})
    assert calls == 0
    assert registry.get_sample_value("agent_start_time_seconds") == monitor.started_at
    from agent import __version__

    build = [s for m in registry.collect() if m.name == "agent_build_info" for s in m.samples]
    assert [s.labels["version"] for s in build] == [__version__] and build[0].value == 1
    assert registry.get_sample_value("process_cpu_seconds_total") is not None
    names = {m.name for m in registry.restricted_registry(["agent_check_up"]).collect()}  # names come from describe()
    assert names == {"agent_check_up"}
