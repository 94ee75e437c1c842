"""``PUT /admin/log-level`` DEBUG under a real agent process, then traffic of every kind: the log
output never holds a request body or a secret (the database DSN's password, the admin token,
the tracing headers' values, the clients' credentials).

The agent has all three secrets configured and uses each: a postgres check against a port where
nothing listens (it fails and is logged every half second), an admin token the test sends, and an
OTLP header sent to a collector that answers 500 (every export fails and is reported).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.agent import AgentProcess
from tests.support.net import free_port
from tests.support.otlp import OtlpReceiver
from tests.support.upstream import UpstreamProcess
from tests.tracing.traced import send, traced_config

DSN_PASSWORD = "dsn-pw-8c41e0"
ADMIN_TOKEN = "admin-token-51f7b2"
OTLP_SECRET = "otlp-bearer-2d9a6e"
CLIENT_SECRET = "client-bearer-7e3f11"
COOKIE_SECRET = "session-cookie-0b5c93"
BODY_MARKER = "request-body-marker-64ad"
SECRETS = (DSN_PASSWORD, ADMIN_TOKEN, OTLP_SECRET, CLIENT_SECRET, COOKIE_SECRET, BODY_MARKER)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        server.set_mode("error")
        yield server


def test_debug_logs_hold_no_bodies_and_no_secrets(
    agent_factory: Callable[..., AgentProcess], healthy_upstream: UpstreamProcess, receiver: OtlpReceiver
) -> None:
    config = traced_config(
        healthy_upstream.url,
        receiver.endpoint,
        {"sample_ratio": 1.0, "headers": {"authorization": f"Bearer {OTLP_SECRET}"}},
        admin={"token": ADMIN_TOKEN},
    )
    config["checks"]["database"] = {"type": "postgres", "dsn": f"postgresql://app:{DSN_PASSWORD}@127.0.0.1:{free_port()}/app"}
    agent = agent_factory(config)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    change = json.dumps({"level": "DEBUG", "duration_s": 120}).encode()
    changed = send(
        agent, "PUT", "/admin/log-level", headers={**admin, "Content-Type": "application/json"}, body=change, admin=True
    )
    assert changed.status == 200, changed.body
    assert changed.json()["level"] == "DEBUG"

    client = {
        "Authorization": f"Bearer {CLIENT_SECRET}",
        "Cookie": f"session={COOKIE_SECRET}",
        "Content-Type": "application/json",
    }
    body = json.dumps({"name": "gold", "note": BODY_MARKER, "password": BODY_MARKER}).encode()
    for i in range(50):
        assert send(agent, "POST", f"/echo/orders/{i}", headers=client, body=body).status == 200
        assert send(agent, "POST", "/api/v1/plans", headers=client, body=body).status == 201
        assert send(agent, "GET", "/status/500", headers=client).status == 500
        assert send(agent, "PUT", "/upload", headers=client, body=body * 20).status == 200
    assert send(agent, "GET", "/admin/log-level", headers=admin, admin=True).json()["level"] == "DEBUG"
    assert send(agent, "GET", "/health/ready", headers=admin, admin=True).status == 503  # the failing database check
    time.sleep(2.5)  # a few more check runs and failed exports

    output = agent.output()
    assert "log level changed" in output
    assert "span export failed" in output or "spans lost" in output  # the export path was exercised
    for secret in SECRETS:
        assert secret not in output, f"{secret!r} is in the log output"
