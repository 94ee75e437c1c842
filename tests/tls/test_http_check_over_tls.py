"""The ``http`` check against an app serving HTTPS: its own ``[checks.NAME.tls]``, the built-in
``upstream`` check taking ``[upstream.tls]``, and what the admin ``/health`` shows for each.

The app is a small aiohttp HTTPS server (trustme certificate) in a thread of the test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.agent import AgentProcess
from tests.support.https_app import HttpsApp
from tests.support.pki import Pki
from tests.support.reports import wait_check

TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def app(pki: Pki) -> Iterator[HttpsApp]:
    with HttpsApp(pki.server) as server:
        yield server


@pytest.fixture(scope="module")
def agent(app: HttpsApp, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    health = f"{app.url}/health"
    config = {
        "server": {"drain_delay_s": 0.1},
        "upstream": {"url": app.url, "tls": {"ca_file": pki.ca_file}},
        "health": {"interval_s": 0.3, "timeout_s": 2.0, "failure_threshold": 1},
        "checks": {
            "disk": {"enabled": False},
            # "upstream" is the built-in http check: upstream.url + /health, with [upstream.tls].
            "with_ca": {"type": "http", "url": health, "tls": {"ca_file": pki.ca_file}},
            "system_store": {"type": "http", "url": health, "critical": False},
            "other_ca": {"type": "http", "url": health, "critical": False, "tls": {"ca_file": pki.other_ca_file}},
            "unverified": {"type": "http", "url": health, "tls": {"verify": False}},
        },
    }
    process = AgentProcess(tmp_path_factory.mktemp("checks"), config).start()
    yield process
    process.stop()


def is_pass(detail: dict[str, Any]) -> bool:
    return detail.get("status") == "pass"


def is_fail(detail: dict[str, Any]) -> bool:
    return detail.get("status") == "fail" and "pending" not in (detail.get("message") or "")


@pytest.mark.parametrize("check", ["with_ca", "upstream", "unverified"])
def test_a_check_that_trusts_the_apps_ca_passes(agent: AgentProcess, check: str) -> None:
    wait_check(agent, check, is_pass, timeout=TIMEOUT_S)


@pytest.mark.parametrize("check", ["system_store", "other_ca"])
def test_a_check_that_does_not_trust_the_apps_ca_fails_and_says_why(agent: AgentProcess, check: str) -> None:
    detail = wait_check(agent, check, is_fail, timeout=TIMEOUT_S)
    assert "certificate" in detail["message"].lower(), detail


def test_the_agent_is_ready_with_only_non_critical_checks_failing(agent: AgentProcess) -> None:
    wait_check(agent, "with_ca", is_pass, timeout=TIMEOUT_S)
    wait_check(agent, "upstream", is_pass, timeout=TIMEOUT_S)
    assert agent.wait_for("/health/ready", 200, timeout=TIMEOUT_S) >= 0
    assert agent.get("/health", admin=True).json()["status"] == "warn"
