"""POST /admin/drain and /admin/undrain: readiness by hand, never undoing a SIGTERM drain."""

from __future__ import annotations

import logging
import signal

from tests.conftest import fast_checks
from tests.support.inprocess import ADMIN_TOKEN


async def ready_status(agent) -> tuple[int, dict]:
    async with agent.main.get("/health/ready") as response:
        return response.status, await response.json()


async def test_drain_and_undrain_flip_readiness_on_the_main_listener(make_agent, caplog):
    agent = await make_agent()
    caplog.set_level(logging.INFO, logger="agent")
    assert (await ready_status(agent))[0] == 200

    response = await agent.admin.post("/admin/drain")
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {"draining": True, "reason": "admin", "ready": False}
    assert await ready_status(agent) == (503, {"status": "not_ready", "failing": [], "draining": True})
    assert (await agent.main.get("/health/live")).status == 200  # liveness never follows a drain
    again = await agent.admin.post("/admin/drain")
    assert (await again.json())["draining"] is True

    response = await agent.admin.post("/admin/undrain")
    assert await response.json() == {"draining": False, "reason": None, "ready": True}
    assert (await ready_status(agent))[0] == 200
    assert (await (await agent.admin.post("/admin/undrain")).json())["draining"] is False

    logged = [(r.getMessage(), getattr(r, "changed", None)) for r in caplog.records if r.name == "agent.admin"]
    assert logged == [
        ("admin drain requested", True),
        ("admin drain requested", False),
        ("admin undrain requested", True),
        ("admin undrain requested", False),
    ]
    history = await (await agent.admin.get("/health/history")).json()
    assert [(e["event"], e["reason"]) for e in history["events"]] == [("drain", "admin"), ("undrain", "admin")]


async def test_other_methods_are_405(make_agent):
    agent = await make_agent(admin={"token": ADMIN_TOKEN})
    for path in ("/admin/drain", "/admin/undrain"):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            response = await agent.admin.request(method, path)
            assert response.status == 405, (method, path)
            assert response.headers["Allow"] == "POST"
            assert (await response.json())["error_code"] == "METHOD_NOT_ALLOWED"
    assert agent.monitor.draining is False


async def test_undrain_never_cancels_a_shutdown(make_agent):
    agent = await make_agent()
    agent.monitor.set_draining(True, "signal SIGTERM")
    response = await agent.admin.post("/admin/undrain")
    assert response.status == 409
    body = await response.json()
    assert body["error_code"] == "CONFLICT" and "signal SIGTERM" in body["message"]
    assert (await ready_status(agent))[0] == 503
    # Draining by hand during a shutdown keeps the shutdown's reason.
    assert (await (await agent.admin.post("/admin/drain")).json())["reason"] == "signal SIGTERM"
    assert (await agent.admin.post("/admin/undrain")).status == 409


async def test_sigterm_during_an_admin_drain_makes_it_a_shutdown(make_agent):
    agent = await make_agent()
    await agent.admin.post("/admin/drain")
    agent.monitor.set_draining(True, "signal SIGTERM")  # what Server.request_stop does
    assert (await agent.admin.post("/admin/undrain")).status == 409
    assert (await ready_status(agent))[0] == 503
    history = await (await agent.admin.get("/health/history")).json()
    assert [(e["event"], e["reason"]) for e in history["events"]] == [("drain", "admin"), ("drain", "signal SIGTERM")]


def test_real_agent_drain_then_sigterm(agent_factory, healthy_upstream):
    """The subprocess agent: drain and undrain by hand, then SIGTERM, after which undrain is 409."""
    config = fast_checks(healthy_upstream.url)
    config["server"] = {"drain_delay_s": 3.0, "shutdown_timeout_s": 2.0}
    config["admin"] = {"token": ADMIN_TOKEN}
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert agent.get("/admin/drain", admin=True, method="POST").status == 401
    assert agent.get("/admin/drain", admin=True, method="POST", headers=bearer).status == 200
    assert agent.get("/health/ready").status == 503
    assert agent.get("/admin/undrain", admin=True, method="POST", headers=bearer).status == 200
    assert agent.get("/health/ready").status == 200

    agent.send_signal(signal.SIGTERM)
    agent.wait_for("/health/ready", 503, timeout=2)
    refused = agent.get("/admin/undrain", admin=True, method="POST", headers=bearer)
    assert refused.status == 409 and refused.json()["error_code"] == "CONFLICT"
    assert agent.get("/health/ready").status == 503
    assert agent.wait(10) == 0
    events = [r for r in agent.log_records() if r.get("logger") == "agent.admin"]
    assert [(e["message"], e["changed"]) for e in events] == [("admin drain requested", True), ("admin undrain requested", True)]
