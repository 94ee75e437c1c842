"""What happened to each request of the SIGTERM figure: pure functions over the clients' records.

A request "reached the agent" when its X-Request-ID is in the agent's access log: the agent parsed
it. Connection errors on requests that never did (refused connects, connections reset by the
kernel while still in the listen backlog when the listener closed) are counted apart.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

BEFORE, DRAIN, AFTER = "before SIGTERM", "drain (SIGTERM -> listener closed)", "after the listener closed"


class Record(NamedTuple):
    """One request of ``clients.keepalive``, which writes each as a JSON list in this order."""

    t_start: float
    t_end: float
    slow: int
    status: int  # 0 when ``error`` is set
    error: str
    new_conn: int
    conn_close: int  # the response said Connection: close
    request_id: str


def failed(r: Record) -> bool:
    return bool(r.error) or not 200 <= r.status < 300


def unreached_kind(r: Record) -> str:
    """What happened to a request that never reached the agent (not in its access log)."""
    if r.error == "refused":
        return "refused"
    if r.new_conn and r.error == "reset":
        return "reset: new conn still in the listen backlog at close"
    if r.new_conn and r.error.startswith("eof"):
        return "EOF: new conn accepted, closed as idle before its request was read"
    return f"{r.error} ({'new' if r.new_conn else 'reused'} conn)"


def example(r: Record, t_sig: float, t_close: float, reached: bool) -> dict[str, Any]:
    return {
        "start_after_sigterm_s": round(r.t_start - t_sig, 4),
        "start_minus_listener_close_ms": round((r.t_start - t_close) * 1000, 2),
        "end_after_sigterm_s": round(r.t_end - t_sig, 4),
        "slow": bool(r.slow),
        "status": r.status,
        "error": r.error,
        "new_connection": bool(r.new_conn),
        "reached_agent": reached,
    }


def phase_summary(rs: list[Record], reached: set[Any]) -> dict[str, Any]:
    errs = [r for r in rs if r.error]
    return {
        "requests": len(rs),
        "reached_agent": sum(1 for r in rs if r.request_id in reached),
        "ok_2xx": sum(1 for r in rs if not failed(r)),
        "non_2xx": dict(Counter(r.status for r in rs if not r.error and not 200 <= r.status < 300)),
        "errors_reached_agent": dict(Counter(r.error for r in errs if r.request_id in reached)),
        "errors_never_reached_agent": dict(Counter(unreached_kind(r) for r in errs if r.request_id not in reached)),
        "slow": sum(1 for r in rs if r.slow),
        "new_connections": sum(1 for r in rs if r.new_conn and not r.error),
        "connection_close_responses": sum(1 for r in rs if r.conn_close),
    }


def phases(recs: list[Record], reached: set[Any], t_sig: float, close_at: float) -> dict[str, dict[str, Any]]:
    """The records grouped by start: before SIGTERM, during the drain, after the listener closed."""
    grouped: dict[str, list[Record]] = {BEFORE: [], DRAIN: [], AFTER: []}
    for r in recs:
        grouped[BEFORE if r.t_start < t_sig else DRAIN if r.t_start < close_at else AFTER].append(r)
    return {k: phase_summary(v, reached) for k, v in grouped.items()}


def analyse(records: list[list[Any]], reached: set[Any], t_sig: float, close_at: float) -> dict[str, Any]:
    """The SIGTERM figure's request counts, from the clients' records and the access log's ids."""
    recs = [Record(*r) for r in records]
    in_flight_at_sig = [r for r in recs if r.t_start < t_sig < r.t_end and r.request_id in reached]
    in_flight_at_close = [r for r in recs if r.t_start < close_at < r.t_end and r.request_id in reached]
    before_close = [r for r in recs if r.t_start < close_at]
    accepted_failures = [r for r in before_close if failed(r) and (not r.error or r.request_id in reached)]
    strict_failures = [r for r in before_close if failed(r)]
    other_failures = [r for r in recs if r.error and r.request_id not in reached]
    return {
        "phases": phases(recs, reached, t_sig, close_at),
        "in_flight_at_sigterm": {"n": len(in_flight_at_sig), "failed": sum(1 for r in in_flight_at_sig if failed(r))},
        "in_flight_at_listener_close": {"n": len(in_flight_at_close), "failed": sum(1 for r in in_flight_at_close if failed(r))},
        "requests_started_before_listener_close": len(before_close),
        "failed_accepted_requests": len(accepted_failures),
        "failed_started_before_close_any_reason": len(strict_failures),
        "failed_started_before_close_kinds": dict(
            Counter(unreached_kind(r) for r in strict_failures if r.error and r.request_id not in reached)
        ),
        "failed_examples": [example(r, t_sig, close_at, r.request_id in reached) for r in accepted_failures[:8]],
        "never_reached_agent": len(other_failures),
        "never_reached_examples": [example(r, t_sig, close_at, False) for r in other_failures[:5]],
    }
