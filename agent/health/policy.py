"""Pure health policy: hysteresis per check, aggregation into live/ready/startup/overall.

No I/O and no clock of its own: every function takes the time it needs, so the rules are tested
from hand-built states.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agent.checks.base import CheckResult, Status

PENDING_MESSAGE = "pending first check"


@dataclass(frozen=True, slots=True)
class CheckState:
    """What the agent currently believes about one check."""

    name: str
    critical: bool
    since: float  # wall-clock time of the last status change (or of the start)
    status: Status = Status.FAIL  # fail closed until the first run completes
    message: str | None = PENDING_MESSAGE
    observations: Mapping[str, Any] = field(default_factory=dict)
    latency_s: float | None = None
    checked_at: float | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    has_passed: bool = False  # latched: has this check ever been pass or warn
    runs: int = 0
    runs_by_result: tuple[int, int, int] = (0, 0, 0)  # runs whose own result was pass, warn, fail
    last_success_at: float | None = None  # wall-clock time of the latest run that passed or warned

    @property
    def is_up(self) -> bool:
        return self.status is not Status.FAIL


def initial_state(name: str, critical: bool, now: float) -> CheckState:
    return CheckState(name=name, critical=critical, since=now)


def apply_result(
    state: CheckState, result: CheckResult, *, failure_threshold: int, success_threshold: int, now: float
) -> CheckState:
    """Fold one run into the state.

    A check that has been up turns ``fail`` only after ``failure_threshold`` failed runs in a row,
    and a failed check comes back only after ``success_threshold`` good runs in a row. A check that
    has never been up has nothing to hold on to: it is ``fail`` until its first good run, which
    counts at once (startup is not a flap).
    """
    if result.status is Status.FAIL:
        failures, successes = state.consecutive_failures + 1, 0
        if not state.is_up or failures >= failure_threshold:
            status = Status.FAIL
        else:
            status = state.status  # hold: one bad run is not an outage
    else:
        failures, successes = 0, state.consecutive_successes + 1
        if state.is_up or not state.has_passed or successes >= success_threshold:
            status = result.status
        else:
            status = Status.FAIL
    return replace(
        state,
        status=status,
        message=result.message,
        observations=result.observations,
        latency_s=result.latency_s,
        checked_at=now,
        since=now if status is not state.status else state.since,
        consecutive_failures=failures,
        consecutive_successes=successes,
        has_passed=state.has_passed or status is not Status.FAIL,
        runs=state.runs + 1,
        runs_by_result=_count(state.runs_by_result, result.status),
        last_success_at=state.last_success_at if result.status is Status.FAIL else now,
    )


_RESULT_INDEX = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def _count(counts: tuple[int, int, int], status: Status) -> tuple[int, int, int]:
    passes, warns, fails = counts
    index = _RESULT_INDEX[status]
    return (passes + (index == 0), warns + (index == 1), fails + (index == 2))


def overall_status(states: Iterable[CheckState], exclude: frozenset[str] = frozenset()) -> Status:
    """``fail`` if a critical check fails; ``warn`` if anything warns or a non-critical check fails."""
    result = Status.PASS
    for state in states:
        if state.name in exclude:
            continue
        if state.status is Status.FAIL:
            if state.critical:
                return Status.FAIL
            result = Status.WARN
        elif state.status is Status.WARN:
            result = Status.WARN
    return result


def failing_critical(states: Iterable[CheckState]) -> list[str]:
    return [s.name for s in states if s.critical and s.status is Status.FAIL]


def pending_critical(states: Iterable[CheckState]) -> list[str]:
    return [s.name for s in states if s.critical and not s.has_passed]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The monitor's state at one instant; replaced whole, never mutated."""

    checks: tuple[CheckState, ...]
    started: bool  # latched once every critical check has been up
    taken_at: float

    def check(self, name: str) -> CheckState | None:
        return next((c for c in self.checks if c.name == name), None)


def next_snapshot(previous: Snapshot, state: CheckState, now: float) -> Snapshot:
    checks = tuple(state if c.name == state.name else c for c in previous.checks)
    started = previous.started or not pending_critical(checks)
    return Snapshot(checks=checks, started=started, taken_at=now)


def is_ready(snapshot: Snapshot, draining: bool) -> bool:
    return snapshot.started and not draining and not failing_critical(snapshot.checks)


def is_alive(
    *, now_mono: float, last_tick_mono: float, max_tick_age_s: float, loop_lag_s: float, max_loop_lag_s: float
) -> str | None:
    """None when alive, else the reason (for the ``dead`` body)."""
    if now_mono - last_tick_mono > max_tick_age_s:
        return f"monitor has not ticked for {now_mono - last_tick_mono:.1f}s"
    if loop_lag_s > max_loop_lag_s:
        return f"event loop lag {loop_lag_s:.2f}s over {max_loop_lag_s:g}s"
    return None
