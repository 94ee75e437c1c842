"""Hysteresis and aggregation, from hand-built states (no I/O, no clock)."""

from __future__ import annotations

from agent.checks.base import CheckResult, Status
from agent.health.policy import (
    PENDING_MESSAGE,
    Snapshot,
    apply_result,
    initial_state,
    is_alive,
    is_ready,
    next_snapshot,
    overall_status,
)

OK = CheckResult(Status.PASS)
WARN = CheckResult(Status.WARN, "slow")
BAD = CheckResult(Status.FAIL, "down")


def run(state, *results, failure_threshold=2, success_threshold=2):
    for i, result in enumerate(results):
        state = apply_result(
            state, result, failure_threshold=failure_threshold, success_threshold=success_threshold, now=100.0 + i
        )
    return state


def test_fails_closed_before_first_run():
    state = initial_state("db", True, now=0.0)
    assert state.status is Status.FAIL
    assert state.message == PENDING_MESSAGE
    assert not state.has_passed


def test_first_good_run_counts_at_once_even_with_success_threshold():
    assert run(initial_state("db", True, 0.0), OK, success_threshold=3).status is Status.PASS


def test_never_pass_before_a_successful_run():
    state = run(initial_state("db", True, 0.0), BAD, BAD, BAD)
    assert state.status is Status.FAIL and not state.has_passed
    assert state.consecutive_failures == 3


def test_one_failure_below_threshold_holds_the_status():
    state = run(initial_state("db", True, 0.0), OK, BAD)
    assert state.status is Status.PASS
    assert state.message == "down"  # the failure is visible even while held
    assert state.consecutive_failures == 1


def test_turns_fail_after_failure_threshold():
    state = run(initial_state("db", True, 0.0), OK, BAD, BAD)
    assert state.status is Status.FAIL
    assert state.since == 102.0


def test_comes_back_only_after_success_threshold():
    failed = run(initial_state("db", True, 0.0), OK, BAD, BAD)
    once = run(failed, OK)
    assert once.status is Status.FAIL
    twice = run(once, OK)
    assert twice.status is Status.PASS


def test_interrupted_recovery_starts_counting_again():
    failed = run(initial_state("db", True, 0.0), OK, BAD, BAD)
    assert run(failed, OK, BAD, OK).status is Status.FAIL


def test_warn_is_up_and_immediate():
    state = run(initial_state("db", True, 0.0), OK, WARN)
    assert state.status is Status.WARN and state.is_up


def test_overall_status_critical_vs_non_critical():
    crit = run(initial_state("db", True, 0.0), OK)
    noncrit_fail = run(initial_state("disk", False, 0.0), BAD)
    assert overall_status([crit]) is Status.PASS
    assert overall_status([crit, noncrit_fail]) is Status.WARN
    crit_fail = run(initial_state("db", True, 0.0), BAD)
    assert overall_status([crit_fail, noncrit_fail]) is Status.FAIL
    assert overall_status([crit_fail, noncrit_fail], exclude=frozenset({"db"})) is Status.WARN


def test_startup_latches_and_readiness_needs_started_not_draining():
    db = initial_state("db", True, 0.0)
    disk = initial_state("disk", False, 0.0)
    snap = Snapshot(checks=(db, disk), started=False, taken_at=0.0)
    assert not is_ready(snap, draining=False)
    snap = next_snapshot(snap, run(db, OK), 1.0)
    assert snap.started  # the failing non-critical check does not hold startup
    assert is_ready(snap, draining=False)
    assert not is_ready(snap, draining=True)
    snap = next_snapshot(snap, run(snap.check("db"), BAD, BAD), 2.0)
    assert snap.started  # latched
    assert not is_ready(snap, draining=False)


def test_liveness_rules():
    assert is_alive(now_mono=10.0, last_tick_mono=9.9, max_tick_age_s=1.0, loop_lag_s=0.01, max_loop_lag_s=1.0) is None
    assert "not ticked" in is_alive(now_mono=10.0, last_tick_mono=5.0, max_tick_age_s=1.0, loop_lag_s=0.0, max_loop_lag_s=1.0)
    assert "lag" in is_alive(now_mono=10.0, last_tick_mono=9.9, max_tick_age_s=1.0, loop_lag_s=2.0, max_loop_lag_s=1.0)
