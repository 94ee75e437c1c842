"""Scenario table A (reliability-anchors.md §7): PostgreSQL faults, with the real agent as a
subprocess, a real PostgreSQL and, where the network is the fault, the fault proxy in between.

Every scenario asserts what the agent *reports*: the probes, the admin ``/health`` detail, the
run history, ``/metrics`` and its log lines.

A8 (an application pool exhausted by slow queries) does not apply: the agent has no pool. Its
``postgres`` check owns one dedicated connection (plus, for a moment, asyncpg's CancelRequest
connection after a timed-out query), opened with ``timeout = check timeout`` and used under the
same deadline, so there is no ``acquire()`` that could wait. What A8 protects against, a probe
stuck behind the app's queries, cannot happen here; A6 shows the agent's own connection count
stays at one while every other slot is taken.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from tests.conftest import fast_checks
from tests.support.agent import AgentProcess
from tests.support.faultproxy import FaultProxy
from tests.support.pg_faults import HotStandby, agent_backend_pids, frozen_postmaster
from tests.support.polling import wait_until
from tests.support.postgres import PostgresServer
from tests.support.reports import check_detail, metric, records, runs, scrape, slowest_probe, status_changes, wait_check

INTERVAL_S, TIMEOUT_S, FAILURES = 0.3, 0.5, 2
# From a fault to readiness 503: up to one interval (with jitter) before the next run, then
# FAILURES runs that each take at most the timeout, plus polling slack.
FAIL_BUDGET_S = INTERVAL_S * 1.1 * FAILURES + TIMEOUT_S * FAILURES + 0.5
PROBE_BUDGET_S = 0.1

AgentFactory = Callable[..., AgentProcess]
ProxyFactory = Callable[[str, int], FaultProxy]


# First of every test's fixtures, so that it outlives the PostgreSQL ones (see conftest.py).
pytestmark = pytest.mark.usefixtures("tmp_root_traversable")


def db_config(upstream_url: str, dsn: str, **health: Any) -> dict[str, Any]:
    config = fast_checks(upstream_url, dsn, interval_s=INTERVAL_S, timeout_s=TIMEOUT_S, failure_threshold=FAILURES, **health)
    config["server"]["drain_delay_s"] = 0.0  # quick teardown
    return config


def db_agent(agent_factory: AgentFactory, upstream_url: str, dsn: str) -> AgentProcess:
    agent = agent_factory(db_config(upstream_url, dsn))
    agent.wait_for("/health/ready", 200, timeout=10)
    return agent


def db_up(agent: AgentProcess, check: str = "database") -> float | None:
    return metric(agent, "agent_check_up", check=check)


def assert_not_ready_because_of_database(agent: AgentProcess) -> None:
    ready = agent.get("/health/ready")
    assert ready.status == 503 and ready.json() == {"status": "not_ready", "failing": ["database"], "draining": False}
    assert agent.get("/health/live").status == 200  # a dead database never restarts the pod
    assert metric(agent, "agent_ready") == 0 and db_up(agent) == 0


# --------------------------------------------------------------------------- A1
def test_a1_database_down_at_start(
    agent_factory: AgentFactory, running_pg: PostgresServer, healthy_upstream: Any, fault_proxy: ProxyFactory
) -> None:
    """The database's address refuses connections when the agent starts (the fault proxy is down),
    then appears: the agent listens at once, fails closed without flooding the log, and turns
    ready by itself."""
    proxy = fault_proxy("127.0.0.1", running_pg.port)
    proxy.down()
    agent = agent_factory(db_config(healthy_upstream.url, proxy.dsn(running_pg.dsn)))  # returns once /health/live is 200
    wait_check(agent, "upstream", lambda d: d["status"] == "pass", timeout=3)
    assert agent.get("/health/startup").json() == {"status": "starting", "pending": ["database"]}
    assert_not_ready_because_of_database(agent)

    detail = wait_check(agent, "database", lambda d: d["consecutive_failures"] >= 4, timeout=4)
    assert detail["status"] == "fail"
    assert "ConnectionRefusedError" in detail["message"], detail["message"]
    assert running_pg.password not in detail["message"]
    assert agent.process is not None and agent.process.poll() is None  # no crash loop
    samples = scrape(agent)
    assert samples[("agent_check_runs_total", frozenset({("check", "database"), ("result", "fail")}))] >= 4
    assert samples[("agent_check_runs_total", frozenset({("check", "database"), ("result", "pass")}))] == 0
    assert ("agent_check_last_success_timestamp_seconds", frozenset({("check", "database")})) not in samples
    # One warning for the failing start, not one per run; asyncpg itself logs nothing.
    noisy = [r for r in agent.log_records() if r["level"] in ("WARNING", "ERROR") and r.get("check") == "database"]
    assert [r["message"] for r in noisy] == ["check failing at start"]
    assert not [r for r in agent.log_records() if r["logger"].startswith("asyncpg")]

    proxy.up()
    agent.wait_for("/health/startup", 200, timeout=3)
    agent.wait_for("/health/ready", 200, timeout=3)
    assert status_changes(agent, "database") == [("fail", "pass")]
    assert records(agent, "started: every critical check has passed once")
    assert db_up(agent) == 1


# --------------------------------------------------------------------------- A2
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a2_database_stopped_and_restarted(
    mode: str, agent_factory: AgentFactory, running_pg: PostgresServer, healthy_upstream: Any
) -> None:
    """``pg_ctl stop -m fast|immediate`` then start: not ready within the budget while proxying
    goes on, ready again without an agent restart, and the dead connection is replaced (one
    backend afterwards, not two)."""
    agent = db_agent(agent_factory, healthy_upstream.url, running_pg.dsn)
    assert len(agent_backend_pids(running_pg)) == 1
    assert metric(agent, "agent_postgres_connections_used_ratio", check="database") is not None

    running_pg.stop(mode)
    took = agent.wait_for("/health/ready", 503, timeout=FAIL_BUDGET_S + 2)
    assert took <= FAIL_BUDGET_S, f"readiness took {took:.2f}s to fail, budget {FAIL_BUDGET_S:.2f}s"
    assert_not_ready_because_of_database(agent)
    assert agent.get("/echo").status == 200  # the proxy path never depends on the database
    detail = check_detail(agent, "database")
    assert detail["message"] and running_pg.password not in detail["message"]
    # The observation gauge disappears while runs fail, instead of repeating an old number.
    assert metric(agent, "agent_postgres_connections_used_ratio", check="database") is None

    running_pg.start()
    agent.wait_for("/health/ready", 200, timeout=5)
    assert len(agent_backend_pids(running_pg)) == 1
    assert status_changes(agent, "database") == [("fail", "pass"), ("pass", "fail"), ("fail", "pass")]
    failures = {r["message"] for r in runs(agent, "database") if r["status"] == "fail"}
    # What asyncpg reported during the outage: the dead connection, then refused connects
    # (or "starting up" / "shutting down" while PostgreSQL changes state).
    known = ("ConnectionDoesNotExistError", "ConnectionRefusedError", "CannotConnectNowError", "AdminShutdownError")
    assert failures and all(any(k in m for k in known) for m in failures), failures


# --------------------------------------------------------------------------- A3
@pytest.mark.slow
def test_a3_postmaster_frozen(agent_factory: AgentFactory, running_pg: PostgresServer, healthy_upstream: Any) -> None:
    """SIGSTOP the postmaster only. The agent's dedicated connection is served by its own backend,
    so the check keeps passing (a real effect, documented: existing sessions work, only new
    connections stall). Once that connection is lost, the reconnect ends at the check's
    timeout: not ready within the budget, probes fast, ready again after SIGCONT."""
    agent = db_agent(agent_factory, healthy_upstream.url, running_pg.dsn)
    (backend,) = agent_backend_pids(running_pg)
    with frozen_postmaster(running_pg):
        passes = metric(agent, "agent_check_runs_total", check="database", result="pass") or 0
        time.sleep(INTERVAL_S * 4)
        assert agent.get("/health/ready").status == 200
        assert (metric(agent, "agent_check_runs_total", check="database", result="pass") or 0) >= passes + 2

        os.kill(backend, signal.SIGTERM)  # what pg_terminate_backend() does; the postmaster cannot fork a new one
        took = agent.wait_for("/health/ready", 503, timeout=FAIL_BUDGET_S + 2)
        assert took <= FAIL_BUDGET_S + INTERVAL_S, took
        assert_not_ready_because_of_database(agent)
        wait_check(agent, "database", lambda d: "timed out after 0.5s" in (d["message"] or ""), timeout=2)
        assert slowest_probe(agent) < PROBE_BUDGET_S
        duration = metric(agent, "agent_check_duration_seconds", check="database")
        assert duration is not None and duration <= TIMEOUT_S + 0.2, duration
    agent.wait_for("/health/ready", 200, timeout=5)
    assert status_changes(agent, "database")[-2:] == [("pass", "fail"), ("fail", "pass")]


# --------------------------------------------------------------------------- A4
@pytest.mark.slow
def test_a4_whole_server_frozen_mid_query(agent_factory: AgentFactory, running_pg: PostgresServer, healthy_upstream: Any) -> None:
    """SIGSTOP every PostgreSQL process. The agent's next query goes to a frozen backend (for
    asyncpg the same as a query in flight when the server froze): it ends at the check timeout,
    the connection is terminated rather than closed politely, and the agent still shuts down at
    once with the server frozen. After SIGCONT no backend of the agent is left behind."""
    agent = db_agent(agent_factory, healthy_upstream.url, running_pg.dsn)
    with running_pg.hung():
        agent.wait_for("/health/ready", 503, timeout=FAIL_BUDGET_S + 2)
        assert_not_ready_because_of_database(agent)
        detail = wait_check(agent, "database", lambda d: d["consecutive_failures"] >= 3, timeout=3)
        assert detail["message"] == "timed out after 0.5s"
        latencies = [r["latency_ms"] for r in runs(agent, "database") if r["status"] == "fail"]
        assert latencies and max(latencies) <= TIMEOUT_S * 1000 + 150, latencies  # asyncpg's cancel adds nothing
        assert slowest_probe(agent) < PROBE_BUDGET_S
        (change,) = records(agent, "check status changed", check="database", to="fail")
        assert change["check_message"] == "timed out after 0.5s" and change["level"] == "WARNING"

        started = time.monotonic()
        agent.stop()  # SIGTERM: close the listeners, then the check's connection (bounded), exit 0
        assert agent.process is not None and agent.process.returncode == 0, agent.output()[-2000:]
        assert time.monotonic() - started < 3.0
    # The terminated connections' backends notice the closed sockets once they run again.
    assert wait_until(lambda: agent_backend_pids(running_pg) == [], timeout=5), agent_backend_pids(running_pg)


# --------------------------------------------------------------------------- A5
@pytest.mark.slow
def test_a5_blackhole_between_agent_and_database(
    agent_factory: AgentFactory, running_pg: PostgresServer, healthy_upstream: Any, fault_proxy: ProxyFactory
) -> None:
    """The fault proxy swallows every byte both ways and closes nothing (a dropped network path).
    The open connection's query and every new connect end at the check timeout (asyncpg's own
    connect default is 60 s); the agent never holds more than two connections; it recovers as
    soon as the path is back."""
    proxy = fault_proxy("127.0.0.1", running_pg.port)
    agent = db_agent(agent_factory, healthy_upstream.url, proxy.dsn(running_pg.dsn))
    proxy.reset_stats()
    proxy.blackhole()
    took = agent.wait_for("/health/ready", 503, timeout=FAIL_BUDGET_S + 2)
    assert took <= FAIL_BUDGET_S, took
    assert_not_ready_because_of_database(agent)
    detail = wait_check(agent, "database", lambda d: d["consecutive_failures"] >= 4, timeout=4)
    assert detail["message"] == "timed out after 0.5s"
    latencies = [r["latency_ms"] for r in runs(agent, "database") if r["status"] == "fail"]
    assert max(latencies) <= TIMEOUT_S * 1000 + 150, latencies
    assert proxy.count("blackholed_connection") >= 3  # new connects, each abandoned at the timeout
    assert proxy.max_active <= 2, proxy.max_active  # the probe's connection + asyncpg's cancel, never more
    assert slowest_probe(agent) < PROBE_BUDGET_S

    proxy.clear()
    agent.wait_for("/health/ready", 200, timeout=3)
    assert status_changes(agent, "database")[-2:] == [("pass", "fail"), ("fail", "pass")]
    assert wait_until(lambda: proxy.active == 1, timeout=3), proxy.active  # the stuck ones were all closed


# --------------------------------------------------------------------------- A6
@pytest.fixture(scope="module")
def small_pg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``max_connections = 5`` and no slots reserved for superusers, so five sessions of the app's
    role fill it. (With the default ``superuser_reserved_connections = 3`` a non-superuser is
    refused from the third session on, with the same SQLSTATE 53300 and the message "remaining
    connection slots are reserved for non-replication superuser connections".)"""
    server = PostgresServer(tmp_path_factory.mktemp("pg5"), max_connections=5)
    server.start()
    server.psql("ALTER SYSTEM SET superuser_reserved_connections = 0")
    server.restart()
    yield server
    server.close()


async def hold_slots(pg: PostgresServer, n: int) -> list[asyncpg.Connection]:
    """``n`` sessions of the app's role, like an application pool."""
    return [await asyncpg.connect(pg.dsn) for _ in range(n)]


@pytest.mark.slow
async def test_a6_max_connections_exhausted(agent_factory: AgentFactory, small_pg: PostgresServer, healthy_upstream: Any) -> None:
    """``max_connections = 5``, all five taken: the agent cannot connect and says why
    (TooManyConnectionsError, SQLSTATE 53300); with one slot back it takes exactly that one and
    warns that the server is full; with the slots freed it passes."""
    held = await hold_slots(small_pg, 5)
    try:
        agent = agent_factory(db_config(healthy_upstream.url, small_pg.dsn))
        detail = wait_check(agent, "database", lambda d: d["message"] != "pending first check", timeout=3)
        assert detail["status"] == "fail"
        assert detail["message"].startswith("TooManyConnectionsError: sorry, too many clients already"), detail["message"]
        assert_not_ready_because_of_database(agent)

        await held.pop().close()
        agent.wait_for("/health/ready", 200, timeout=3)
        detail = wait_check(agent, "database", lambda d: d["status"] == "warn", timeout=2)
        assert detail["message"] == "5 of 5 connections in use"
        assert detail["observations"]["connections_used_ratio"] == 1.0
        assert metric(agent, "agent_postgres_connections_used_ratio", check="database") == 1.0
        assert metric(agent, "agent_check_status", check="database", status="warn") == 1
        assert agent.get("/health").json()["status"] == "warn"
        # Its own small cap: one connection (counted over a held session: psql would need a slot).
        count_sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sidecar-agent'"
        assert await held[0].fetchval(count_sql) == 1
    finally:
        await asyncio.gather(*(c.close() for c in held))
    wait_check(agent, "database", lambda d: d["status"] == "pass", timeout=3)


# --------------------------------------------------------------------------- A7
@pytest.mark.slow
def test_a7_read_only_server_still_passes(agent_factory: AgentFactory, running_pg: PostgresServer, healthy_upstream: Any) -> None:
    """``default_transaction_read_only = on`` (+ reload): the check only reads, so it passes and
    the agent stays ready. Documented, not a bug: the agent does not report read-only-ness
    (no observation for it); ``expect_primary`` looks at ``pg_is_in_recovery()`` only."""
    agent = db_agent(agent_factory, healthy_upstream.url, running_pg.dsn)
    running_pg.psql("ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf();")
    try:
        assert wait_until(lambda: running_pg.psql("SHOW default_transaction_read_only").strip() == "on", timeout=3)
        runs_before = metric(agent, "agent_check_runs_total", check="database", result="pass") or 0
        assert wait_until(
            lambda: (metric(agent, "agent_check_runs_total", check="database", result="pass") or 0) >= runs_before + 3, timeout=3
        )
        detail = check_detail(agent, "database")
        assert detail["status"] == "pass" and detail["observations"]["in_recovery"] is False
        assert not any("read_only" in key for key in detail["observations"])
        assert agent.get("/health/ready").status == 200
    finally:
        running_pg.psql("ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();")


@pytest.mark.slow
def test_a7_hot_standby_fails_expect_primary(
    agent_factory: AgentFactory, running_pg: PostgresServer, healthy_upstream: Any
) -> None:
    """A real hot standby (``pg_basebackup -R`` of the session cluster, streaming replication):
    ``pg_is_in_recovery()`` is true, so a check with ``expect_primary = true`` fails with a clear
    message while one with ``expect_primary = false`` passes; both export in_recovery = 1."""
    standby = HotStandby(running_pg)
    try:
        standby.start()
        assert standby.psql("SELECT pg_is_in_recovery()") == "t"
        config = db_config(healthy_upstream.url, standby.dsn)
        config["checks"]["replica"] = {"type": "postgres", "dsn": standby.dsn, "expect_primary": False}
        agent = agent_factory(config)
        primary = wait_check(agent, "database", lambda d: d["message"] != "pending first check", timeout=3)
        assert primary["status"] == "fail"
        assert primary["message"] == "server is in recovery (a standby) but expect_primary = true"
        assert primary["observations"]["in_recovery"] is True
        replica = wait_check(agent, "replica", lambda d: d["status"] == "pass", timeout=3)
        assert replica["observations"]["in_recovery"] is True
        assert_not_ready_because_of_database(agent)
        assert metric(agent, "agent_postgres_in_recovery", check="database") == 1
        assert metric(agent, "agent_postgres_in_recovery", check="replica") == 1
        assert metric(agent, "agent_check_up", check="replica") == 1
    finally:
        standby.stop()
