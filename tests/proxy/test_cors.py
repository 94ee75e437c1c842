"""CORS on the main listener: preflights answered by the agent, origins echoed only when allowed."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, build_config
from tests.conftest import fast_checks

ALLOWED = "https://app.example"


def cors_agent(agent_factory, upstream, **cors):
    config = fast_checks(upstream.url)
    config["cors"] = {"allowed_origins": [ALLOWED], "allow_credentials": True, **cors}
    return agent_factory(config)


def test_preflight_answered_by_the_agent(agent_factory, healthy_upstream):
    agent = cors_agent(agent_factory, healthy_upstream)
    before = healthy_upstream.requests_served()
    response = agent.get(
        "/api/v1/plans",
        method="OPTIONS",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Vary"] == "Origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "X-Request-ID" in response.headers
    assert healthy_upstream.requests_served() == before  # never forwarded


def test_disallowed_origin_gets_no_cors_headers(agent_factory, healthy_upstream):
    agent = cors_agent(agent_factory, healthy_upstream)
    preflight = agent.get(
        "/x", method="OPTIONS", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status == 204
    assert "Access-Control-Allow-Origin" not in preflight.headers
    actual = agent.get("/echo", headers={"Origin": "https://evil.example"})
    assert actual.status == 200
    assert "Access-Control-Allow-Origin" not in actual.headers


def test_actual_request_and_errors_carry_cors(agent_factory, healthy_upstream):
    agent = cors_agent(agent_factory, healthy_upstream)
    ok = agent.get("/echo", headers={"Origin": ALLOWED})
    assert ok.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "X-Request-ID" in ok.headers["Access-Control-Expose-Headers"]
    missing = agent.get("/api/v1/plans/00000000-0000-0000-0000-000000000000", headers={"Origin": ALLOWED})
    assert missing.status == 404
    assert missing.headers["Access-Control-Allow-Origin"] == ALLOWED


def test_cors_off_by_default_forwards_options(agent_factory, healthy_upstream):
    agent = agent_factory(fast_checks(healthy_upstream.url))
    response = agent.get("/echo", method="OPTIONS", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"})
    assert response.status == 200  # the app answered: the agent does no CORS unless configured
    assert "Access-Control-Allow-Origin" not in response.headers


def test_wildcard_with_credentials_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^cors\.allow_credentials"):
        build_config({"cors": {"allowed_origins": ["*"], "allow_credentials": True}}, {}, "test")
