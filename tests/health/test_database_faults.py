"""The agent process while its real PostgreSQL is stopped, hung and restarted."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from tests.conftest import fast_checks

INTERVAL_S, TIMEOUT_S, FAILURES = 0.3, 0.5, 2


def db_agent(agent_factory, pg, upstream, **health):
    config = fast_checks(upstream.url, pg.dsn, interval_s=INTERVAL_S, timeout_s=TIMEOUT_S, failure_threshold=FAILURES, **health)
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)
    return agent


@pytest.mark.slow
def test_database_stopped_then_restarted(agent_factory, running_pg, healthy_upstream):
    agent = db_agent(agent_factory, running_pg, healthy_upstream)
    running_pg.stop("fast")
    # Budget from the issue: interval x failure_threshold + timeout (+ jitter and polling slack).
    budget = INTERVAL_S * 1.1 * FAILURES + TIMEOUT_S + 0.5
    took = agent.wait_for("/health/ready", 503, timeout=budget + 2)
    assert took <= budget, f"readiness took {took:.2f}s to fail, budget {budget:.2f}s"
    assert agent.get("/health/live").status == 200
    ready = agent.get("/health/ready").json()
    assert ready == {"status": "not_ready", "failing": ["database"], "draining": False}
    health = agent.get("/health")
    assert health.status == 503
    assert health.json()["checks"]["database"]["status"] == "fail"
    admin = agent.get("/health", admin=True).json()
    assert admin["checks"]["database"]["message"]
    assert agent.get("/health/startup").status == 200  # latched: startup is not readiness

    running_pg.restart()
    agent.wait_for("/health/ready", 200, timeout=5)
    assert agent.get("/health").json()["checks"]["database"]["status"] == "pass"
    changes = [r for r in agent.log_records() if r["message"] == "check status changed" and r["check"] == "database"]
    # pending (fail closed) -> pass at start, then the outage and the recovery, each logged once
    assert [(r["from"], r["to"]) for r in changes] == [("fail", "pass"), ("pass", "fail"), ("fail", "pass")]


@pytest.mark.slow
def test_database_hung_probes_stay_fast(agent_factory, running_pg, healthy_upstream):
    agent = db_agent(agent_factory, running_pg, healthy_upstream)
    with running_pg.hung():
        agent.wait_for("/health/ready", 503, timeout=INTERVAL_S * FAILURES + TIMEOUT_S * FAILURES + 2)
        slowest = 0.0
        for _ in range(200):
            for path in ("/health/live", "/health/ready", "/health"):
                response = agent.get(path)
                slowest = max(slowest, response.elapsed_s)
        assert slowest < 0.1, f"a probe took {slowest * 1000:.1f} ms while the database was hung"
        assert agent.get("/health/live").status == 200
        message = agent.get("/health", admin=True).json()["checks"]["database"]["message"]
        assert "timed out" in message
    agent.wait_for("/health/ready", 200, timeout=5)


@pytest.mark.slow
def test_database_down_at_start(agent_factory, running_pg, healthy_upstream):
    running_pg.stop("fast")
    agent = agent_factory(fast_checks(healthy_upstream.url, running_pg.dsn, interval_s=INTERVAL_S, timeout_s=TIMEOUT_S))
    # The upstream check's first run may still be under way right after start: wait for it,
    # while the database stays pending throughout.
    deadline = time.monotonic() + 5
    while True:
        startup = agent.get("/health/startup")
        assert startup.status == 503 and "database" in startup.json()["pending"]
        if startup.json()["pending"] == ["database"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert startup.json() == {"status": "starting", "pending": ["database"]}
    ready = agent.get("/health/ready")
    assert ready.status == 503 and ready.json()["failing"] == ["database"]
    assert agent.get("/health/live").status == 200
    running_pg.restart()
    agent.wait_for("/health/startup", 200, timeout=5)
    agent.wait_for("/health/ready", 200, timeout=5)


def test_probes_never_touch_the_database(agent_factory, running_pg, healthy_upstream):
    # A long interval: after the first check, nothing but probes reaches the agent.
    config = fast_checks(healthy_upstream.url, running_pg.dsn, interval_s=60.0, timeout_s=2.0)
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)
    time.sleep(0.2)
    offset = running_pg.statement_log_size()

    def hit(path: str) -> int:
        return agent.get(path).status

    paths = ["/health/ready", "/health/live", "/health/startup", "/health"] * 750
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(hit, paths))
    assert statuses.count(200) == len(paths)
    admin_paths = ["/health", "/health/ready"] * 100
    assert all(agent.get(p, admin=True).status == 200 for p in admin_paths)
    assert running_pg.count_statements("", since=offset) == 0
    backends = running_pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sidecar-agent'")
    assert backends.strip() == "1"


def test_password_never_leaks(agent_factory, running_pg, healthy_upstream, tmp_path):
    password = running_pg.password
    wrong = "NotTheRealPass-" + password[:6]
    bad_dsn = running_pg.dsn.replace(password, wrong)
    config = fast_checks(healthy_upstream.url, running_pg.dsn)
    config["checks"]["replica"] = {"type": "postgres", "dsn": bad_dsn, "critical": False}
    agent = agent_factory(config, env={"DATABASE_URL": running_pg.dsn})
    agent.wait_for("/health/ready", 200, timeout=10)
    time.sleep(1.0)  # several failed runs of the misconfigured check
    bodies = []
    for admin in (False, True):
        for path in ("/health", "/health/ready", "/health/live", "/health/startup", "/health?exclude=replica"):
            for accept in ("application/json", "application/health+json"):
                bodies.append(agent.get(path, admin=admin, headers={"Accept": accept}).body.decode())
    for level in ("none", "status", "full"):
        lvl_config = fast_checks(healthy_upstream.url, running_pg.dsn, public_details=level)
        lvl_config["checks"]["replica"] = {"type": "postgres", "dsn": bad_dsn, "critical": False}
        other = agent_factory(lvl_config, name=f"level-{level}")
        time.sleep(0.5)
        bodies.append(other.get("/health").body.decode())
        other.stop()
        bodies.append(other.output())
    replica = agent.get("/health", admin=True).json()["checks"]["replica"]
    assert replica["status"] == "fail" and "password authentication failed" in replica["message"]
    running_pg.stop("fast")
    agent.wait_for("/health/ready", 503, timeout=5)
    bodies.append(agent.get("/health", admin=True).body.decode())
    running_pg.restart()
    agent.stop()
    bodies.append(agent.output())
    everything = "\n".join(bodies)
    assert password not in everything
    assert wrong not in everything
