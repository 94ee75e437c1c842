"""The history ring buffers: bounded whatever the run count, oldest first, transitions as logged."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from agent.admin.status.render import history_body
from agent.checks.base import CheckResult, Status, failed, passed
from agent.health.history import MAX_EVENTS, MAX_MESSAGE_CHARS, MAX_TRANSITIONS, History
from agent.health.policy import Snapshot, apply_result, initial_state


def feed(history: History, results: list[CheckResult], *, name: str = "database", start: float = 1000.0) -> None:
    """Fold ``results`` through the real hysteresis, recording each run as the monitor does."""
    state = initial_state(name, True, start)
    for i, result in enumerate(results):
        now = start + i
        after = apply_result(state, result, failure_threshold=1, success_threshold=1, now=now)
        history.record(result, before=state, after=after, at=now)
        state = after


def flapping(n: int) -> list[CheckResult]:
    return [passed() if i % 2 else failed(f"connection refused #{i}") for i in range(n)]


def test_runs_are_bounded_and_keep_the_newest():
    history = History(["database"], size=120)
    feed(history, flapping(10_000))
    runs = history.runs("database")
    assert len(runs) == 120
    assert [r.at for r in runs] == [1000.0 + i for i in range(10_000 - 120, 10_000)]
    assert len(history.transitions()) == MAX_TRANSITIONS
    assert history.transitions()[-1].at == 1000.0 + 9_999


def test_memory_stays_flat_however_long_it_runs():
    history = History(["database", "upstream"], size=120)
    for name in ("database", "upstream"):
        feed(history, flapping(2_000), name=name)
    gc.collect()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for round_ in range(5):
            for name in ("database", "upstream"):
                feed(history, flapping(2_000), name=name, start=10_000.0 * (round_ + 1))
            history.record_drain(round_ % 2 == 0, "admin", at=float(round_))
        gc.collect()
        grown, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 20,000 more runs replaced the same 240 slots: what is held does not grow with the run count.
    assert grown - baseline < 64 * 1024
    assert len(history.runs("database")) == len(history.runs("upstream")) == 120


def test_transitions_follow_hysteresis_and_mark_the_first_run():
    history = History(["database"], size=10)
    feed(history, [passed(), passed(), failed("down"), failed("down"), passed()])
    transitions = [(t.before, t.after, t.is_first_run, t.message) for t in history.transitions()]
    assert transitions == [
        (Status.FAIL, Status.PASS, True, None),
        (Status.PASS, Status.FAIL, False, "down"),
        (Status.FAIL, Status.PASS, False, None),
    ]
    # Runs keep each run's own result, so a flap hysteresis held back is still visible.
    assert [r.status for r in history.runs("database")] == [Status.PASS, Status.PASS, Status.FAIL, Status.FAIL, Status.PASS]


def test_long_messages_are_clipped_and_events_bounded():
    history = History(["database"], size=5)
    feed(history, [failed("x" * 10_000)])
    message = history.runs("database")[0].message
    assert message is not None and len(message) == MAX_MESSAGE_CHARS + 1
    for i in range(MAX_EVENTS * 3):
        history.record_drain(i % 2 == 0, "admin", at=float(i))
    assert len(history.drain_events()) == MAX_EVENTS


def test_size_must_be_positive():
    with pytest.raises(ValueError, match="> 0"):
        History(["database"], size=0)


def test_body_shape():
    history = History(["database"], size=3)
    feed(history, [passed(), failed("down")])
    history.record_drain(True, "admin", at=1005.0)
    snapshot = Snapshot(checks=(initial_state("database", True, 1000.0),), started=True, taken_at=1001.0)
    body = history_body(history, snapshot, draining=True, drain_reason="admin", version="1.2.3", started_at=1000.0, now=1010.0)
    assert body["history_size"] == 3
    assert body["readiness"] == {"ready": False, "started": True, "draining": True, "drain_reason": "admin", "tunnels_open": 0}
    assert body["current"]["status"] == "fail" and body["current"]["version"] == "1.2.3"
    runs = body["checks"]["database"]["runs"]
    assert [r["status"] for r in runs] == ["pass", "fail"]
    assert runs[1]["message"] == "down" and runs[0]["at"].endswith("Z")
    assert body["transitions"][-1] | {"at": None} == {
        "at": None,
        "check": "database",
        "from": "pass",
        "to": "fail",
        "first_run": False,
        "message": "down",
    }
    assert body["events"][0]["event"] == "drain" and body["events"][0]["reason"] == "admin"
