"""Endpoints in-process: bodies, media types, detail levels, exclude, the admin token."""

from __future__ import annotations

import asyncio

import pytest

from agent.checks.base import CheckResult, Status, failed
from agent.health.monitor import Monitor, ScheduledCheck
from agent.health.render import ready_body, startup_body
from agent.secrets import Redactor
from tests.support.inprocess import ADMIN_TOKEN, scripted_config


@pytest.fixture
def clients(make_agent):
    """``await clients(**overrides)`` -> (main listener session, admin client, monitor)."""

    async def make(**overrides):
        agent = await make_agent(**overrides)
        return agent.main, agent.admin, agent.monitor

    return make


async def test_probe_bodies_and_headers(clients):
    main, _, _ = await clients()
    for path, body in (
        ("/health/live", {"status": "alive"}),
        ("/health/ready", {"status": "ready"}),
        ("/health/startup", {"status": "started"}),
    ):
        response = await main.get(path)
        assert response.status == 200
        assert await response.json() == body
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Server" not in response.headers
        head = await main.head(path)
        assert head.status == 200


async def test_non_critical_failure_warns_but_stays_ready(clients):
    main, _, _ = await clients()
    health = await main.get("/health")
    assert health.status == 200
    body = await health.json()
    assert body["status"] == "warn"
    # default public_details = "status": statuses and latency, no messages or observations
    assert set(body["checks"]["cache"]) == {"status", "critical", "latency_ms"}
    assert body["checks"]["cache"]["status"] == "fail"
    assert (await main.get("/health/ready")).status == 200


async def test_critical_failure(clients, results):
    main, admin, monitor = await clients()
    results["database"] = failed("timed out after 2s")
    for _ in range(100):
        if monitor.snapshot.check("database").status is Status.FAIL:
            break
        await asyncio.sleep(0.01)
    ready = await main.get("/health/ready")
    assert ready.status == 503
    assert await ready.json() == {"status": "not_ready", "failing": ["database"], "draining": False}
    assert (await main.get("/health")).status == 503
    assert (await main.get("/health/live")).status == 200
    excluded = await admin.get("/health?exclude=database")
    assert excluded.status == 200
    body = await excluded.json()
    assert body["status"] == "warn" and "database" not in body["checks"] and body["excluded"] == ["database"]
    # exclude is an admin feature; the main listener ignores it
    assert (await main.get("/health?exclude=database")).status == 503


@pytest.mark.parametrize(("level", "keys"), [("none", {"status"}), ("status", None), ("full", None)])
async def test_public_detail_levels(clients, level, keys):
    main, _, _ = await clients(health={"public_details": level})
    body = await (await main.get("/health")).json()
    if keys is not None:
        assert set(body) == keys
    elif level == "status":
        assert "message" not in body["checks"]["cache"]
    else:
        assert body["checks"]["cache"]["message"].startswith("connection refused")
        assert "hunter2" not in body["checks"]["cache"]["message"]
        assert body["checks"]["database"]["observations"]["server_version"] == "15.18"


async def test_admin_full_details_and_health_json(clients):
    _, admin, _ = await clients()
    body = await (await admin.get("/health")).json()
    assert body["checks"]["database"]["observations"]["in_recovery"] is False
    assert set(body) >= {"status", "version", "uptime_s", "timestamp", "draining", "checks"}
    response = await admin.get("/health", headers={"Accept": "application/health+json"})
    assert response.headers["Content-Type"] == "application/health+json"
    doc = await response.json()
    assert doc["status"] == "warn" and doc["releaseId"] == body["version"]
    entry = doc["checks"]["database:responseTime"][0]
    assert entry["componentId"] == "database" and entry["observedUnit"] == "ms" and entry["status"] == "pass"
    assert doc["checks"]["database:connections"][0]["observedValue"] == 0.1
    assert doc["checks"]["cache:responseTime"][0]["output"].startswith("connection refused")


async def test_admin_token_gates_details_not_probes(clients):
    _, admin, _ = await clients(admin={"token": ADMIN_TOKEN})
    anonymous = await (await admin.get("/health")).json()
    assert "message" not in anonymous["checks"]["cache"]
    wrong = await (await admin.get("/health", headers={"Authorization": "Bearer nope"})).json()
    assert "message" not in wrong["checks"]["cache"]
    authorized = await (await admin.get("/health", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})).json()
    assert authorized["checks"]["cache"]["message"]
    assert (await admin.get("/health/ready")).status == 200


async def test_draining_flips_ready_only(clients):
    main, _, monitor = await clients()
    monitor.set_draining(True, "test")
    ready = await main.get("/health/ready")
    assert ready.status == 503 and (await ready.json())["draining"] is True
    assert (await main.get("/health/live")).status == 200
    assert (await main.get("/health")).status == 200


async def test_pending_checks_fail_closed():
    config = scripted_config()

    async def never() -> CheckResult:
        await asyncio.sleep(3600)
        raise AssertionError

    monitor = Monitor([ScheduledCheck(c, never) for c in config.checks], Redactor([]), max_loop_lag_s=1.0, default_interval_s=1.0)
    assert startup_body(monitor.snapshot) == (503, b'{"status":"starting","pending":["database"]}')
    code, body = ready_body(monitor.snapshot, False)
    assert code == 503 and b'"failing":["database"]' in body
