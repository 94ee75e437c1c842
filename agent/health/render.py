"""Health bodies rendered from a snapshot: the agent's JSON and the IETF ``application/health+json``.

Pure functions of (snapshot, flags, time); the endpoints only pick which one to call.
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.checks.base import Status
from agent.health.policy import (
    CheckState,
    Snapshot,
    failing_critical,
    overall_status,
    pending_critical,
)
from agent.rules.clock import rfc3339

DETAIL_LEVELS = ("none", "status", "full")

# IETF draft-inadarei-api-health-check-06 componentType per check type.
_COMPONENT_TYPE = {"postgres": "datastore", "http": "component", "tcp": "component", "disk": "system", "memory": "system"}
# Observations reported as ``component:measurement`` entries, with their unit.
_MEASUREMENTS = {
    "connections_used_ratio": ("connections", "ratio"),
    "free_ratio": ("freeSpace", "ratio"),
    "used_ratio": ("utilization", "ratio"),
}


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def ready_body(snapshot: Snapshot, draining: bool) -> tuple[int, bytes]:
    failing = failing_critical(snapshot.checks)
    if snapshot.started and not draining and not failing:
        return 200, b'{"status":"ready"}'
    if not snapshot.started and not failing:
        failing = pending_critical(snapshot.checks)
    return 503, dumps({"status": "not_ready", "failing": failing, "draining": draining})


def startup_body(snapshot: Snapshot) -> tuple[int, bytes]:
    if snapshot.started:
        return 200, b'{"status":"started"}'
    return 503, dumps({"status": "starting", "pending": pending_critical(snapshot.checks)})


def live_body(problem: str | None) -> tuple[int, bytes]:
    if problem is None:
        return 200, b'{"status":"alive"}'
    return 503, dumps({"status": "dead", "reason": problem})


def _check_entry(state: CheckState, detail: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "status": str(state.status),
        "critical": state.critical,
        "latency_ms": None if state.latency_s is None else round(state.latency_s * 1000, 3),
    }
    if detail == "full":
        entry.update(
            checked_at=None if state.checked_at is None else rfc3339(state.checked_at),
            since=rfc3339(state.since),
            consecutive_failures=state.consecutive_failures,
            message=state.message,
            observations=dict(state.observations),
        )
    return entry


def health_body(
    snapshot: Snapshot,
    *,
    draining: bool,
    detail: str,
    version: str,
    started_at: float,
    now: float,
    exclude: frozenset[str] = frozenset(),
) -> tuple[int, dict[str, Any]]:
    status = overall_status(snapshot.checks, exclude)
    code = 503 if status is Status.FAIL else 200
    body: dict[str, Any] = {"status": str(status)}
    if detail == "none":
        return code, body
    body.update(version=version, uptime_s=round(now - started_at, 3), timestamp=rfc3339(now), draining=draining)
    body["checks"] = {s.name: _check_entry(s, detail) for s in snapshot.checks if s.name not in exclude}
    if exclude:
        body["excluded"] = sorted(exclude)
    return code, body


def health_json_body(
    snapshot: Snapshot,
    *,
    detail: str,
    version: str,
    check_types: dict[str, str],
    exclude: frozenset[str] = frozenset(),
) -> tuple[int, dict[str, Any]]:
    """The same state in the IETF draft's vocabulary (pass/warn/fail are its own)."""
    status = overall_status(snapshot.checks, exclude)
    code = 503 if status is Status.FAIL else 200
    body: dict[str, Any] = {"status": str(status), "version": version.split(".")[0], "releaseId": version}
    if detail == "none":
        return code, body
    checks: dict[str, list[dict[str, Any]]] = {}
    for state in snapshot.checks:
        if state.name in exclude:
            continue
        base = {
            "componentId": state.name,
            "componentType": _COMPONENT_TYPE.get(check_types.get(state.name, ""), "component"),
            "status": str(state.status),
        }
        if state.checked_at is not None:
            base["time"] = rfc3339(state.checked_at)
        if detail == "full" and state.status is not Status.PASS and state.message:
            base["output"] = state.message
        if state.latency_s is not None:
            checks[f"{state.name}:responseTime"] = [
                {**base, "observedValue": round(state.latency_s * 1000, 3), "observedUnit": "ms"}
            ]
        else:
            checks[f"{state.name}:responseTime"] = [base]
        if detail == "full":
            for key, (measurement, unit) in _MEASUREMENTS.items():
                if key in state.observations:
                    checks[f"{state.name}:{measurement}"] = [
                        {**base, "observedValue": state.observations[key], "observedUnit": unit}
                    ]
    body["checks"] = checks
    return code, body
