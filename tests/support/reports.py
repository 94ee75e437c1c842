"""What a running agent process reports, read the way an operator reads it: the admin ``/metrics``
page, the admin health detail and history of each check, and the JSON log lines on stdout."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import AgentProcess

# --------------------------------------------------------------------------- metrics and health


def scrape(agent: AgentProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the admin ``/metrics`` page, keyed by (sample name, labels)."""
    response = agent.get("/metrics", admin=True)
    assert response.status == 200, response.status
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(agent: AgentProcess, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series does not exist."""
    return scrape(agent).get((name, frozenset(labels.items())))


def upstream_errors(agent: AgentProcess) -> dict[str, float]:
    """``agent_upstream_errors_total`` by reason."""
    return {
        dict(labels)["reason"]: value for (name, labels), value in scrape(agent).items() if name == "agent_upstream_errors_total"
    }


def check_detail(agent: AgentProcess, name: str) -> dict[str, Any]:
    """The admin listener's full detail of one check (status, message, observations...)."""
    body = agent.get("/health", admin=True).json()
    detail: dict[str, Any] = body["checks"][name]
    return detail


def wait_check(agent: AgentProcess, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """Poll the admin detail of ``name`` until ``predicate`` holds; returns that detail."""
    deadline = time.monotonic() + timeout
    detail = check_detail(agent, name)
    while not predicate(detail):
        if time.monotonic() > deadline:
            raise AssertionError(f"check {name!r} never matched within {timeout}s; last: {detail}")
        time.sleep(0.05)
        detail = check_detail(agent, name)
    return detail


def runs(agent: AgentProcess, check: str) -> list[dict[str, Any]]:
    """The check's recent runs from the admin ``/health/history`` (oldest first): each run's own
    result, latency and message, before hysteresis."""
    body = agent.get("/health/history", admin=True).json()
    found: list[dict[str, Any]] = body["checks"][check]["runs"]
    return found


def slowest_probe(agent: AgentProcess, rounds: int = 30) -> float:
    """The slowest of ``rounds`` x (live, ready, /health) on the main listener, in seconds."""
    slowest = 0.0
    for _ in range(rounds):
        for path in ("/health/live", "/health/ready", "/health"):
            slowest = max(slowest, agent.get(path).elapsed_s)
    return slowest


# --------------------------------------------------------------------------- logs


def wait_for_log(agent: AgentProcess, predicate: Callable[[dict[str, Any]], bool], timeout: float = 3.0) -> list[dict[str, Any]]:
    """The log lines matching ``predicate`` once there is at least one, or [] after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in agent.log_records() if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def records(agent: AgentProcess, message: str, **fields: Any) -> list[dict[str, Any]]:
    """The agent's JSON log lines with that message and those field values."""
    return [r for r in agent.log_records() if r.get("message") == message and all(r.get(k) == v for k, v in fields.items())]


def status_changes(agent: AgentProcess, check: str) -> list[tuple[str, str]]:
    return [(r["from"], r["to"]) for r in records(agent, "check status changed", check=check)]
