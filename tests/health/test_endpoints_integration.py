"""The health endpoints of a real agent process against a real PostgreSQL and upstream app."""

from __future__ import annotations

import time
import uuid

from tests.conftest import fast_checks
from tests.support.agent import http_get


def test_seed_health_endpoints(agent_factory, running_pg, healthy_upstream):
    """The seed's tests/integration/test_health_endpoints.py cases, against a running agent."""
    agent = agent_factory(fast_checks(healthy_upstream.url, running_pg.dsn))
    agent.wait_for("/health/ready", 200, timeout=10)

    live = agent.get("/health/live")
    assert live.status == 200
    assert live.json() == {"status": "alive"}

    ready = agent.get("/health/ready")
    assert ready.status == 200
    assert "status" in ready.json()

    detailed = agent.get("/health")
    assert detailed.status == 200
    data = detailed.json()
    assert "status" in data
    assert "checks" in data
    assert "database" in data["checks"]


def test_seed_request_context(agent_factory, healthy_upstream):
    """The seed's tests/integration/test_request_context.py cases."""
    agent = agent_factory(fast_checks(healthy_upstream.url))
    response = agent.get("/health/live")
    assert "X-Request-ID" in response.headers
    uuid.UUID(response.headers["X-Request-ID"])

    custom_id = "test-request-123"
    response = agent.get("/health/live", headers={"X-Request-ID": custom_id})
    assert response.headers["X-Request-ID"] == custom_id


def test_invalid_request_id_is_replaced_never_echoed(agent_factory, healthy_upstream):
    agent = agent_factory(fast_checks(healthy_upstream.url))
    for bad in ("x" * 129, "has space", "semi;colon", "ünïcode"):
        response = agent.get("/health/live", headers={"X-Request-ID": bad})
        assert response.headers["X-Request-ID"] != bad
        uuid.UUID(response.headers["X-Request-ID"])
