"""The ``/health/history`` body: the current state, recent runs per check, transitions, drain events.

A pure function of (history, snapshot, drain state, time), like ``agent.health.render``. ``current``
is the full ``/health`` body, so the status page needs one request per refresh, always a 200 (the
``/health`` endpoint itself answers 503 while failing, which a browser logs as an error). Lists are
oldest first; times are RFC 3339 UTC; latencies are milliseconds.
"""

from __future__ import annotations

from typing import Any

from agent.health.history import History
from agent.health.policy import Snapshot, is_ready
from agent.health.render import health_body
from agent.rules.clock import rfc3339


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def history_body(
    history: History,
    snapshot: Snapshot,
    *,
    draining: bool,
    drain_reason: str | None,
    version: str,
    started_at: float,
    now: float,
    tunnels_open: int = 0,
) -> dict[str, Any]:
    _, current = health_body(snapshot, draining=draining, detail="full", version=version, started_at=started_at, now=now)
    return {
        "timestamp": rfc3339(now),
        "history_size": history.size,
        "current": current,
        "readiness": {
            "ready": is_ready(snapshot, draining),
            "started": snapshot.started,
            "draining": draining,
            "drain_reason": drain_reason,
            "tunnels_open": tunnels_open,  # WebSocket tunnels the main listener holds open
        },
        "checks": {
            name: {
                "runs": [
                    {"at": rfc3339(run.at), "status": str(run.status), "latency_ms": _ms(run.latency_s), "message": run.message}
                    for run in history.runs(name)
                ]
            }
            for name in history.names()
        },
        "transitions": [
            {
                "at": rfc3339(t.at),
                "check": t.check,
                "from": str(t.before),
                "to": str(t.after),
                "first_run": t.is_first_run,  # from the fail-closed "pending first check" state
                "message": t.message,
            }
            for t in history.transitions()
        ],
        "events": [
            {"at": rfc3339(e.at), "event": "drain" if e.is_draining else "undrain", "reason": e.reason}
            for e in history.drain_events()
        ],
    }
