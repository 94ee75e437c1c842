"""Recent check runs, status transitions and drain events, in bounded memory.

Each check keeps its last ``size`` runs in a ``deque(maxlen=size)`` of frozen entries; status
transitions and drain events keep the last ``MAX_TRANSITIONS`` / ``MAX_EVENTS``. Memory is
bounded however long the agent runs. The monitor is the only writer; readers (``/health/history``,
``/status``) take ``tuple`` copies, which cannot interleave with a write on one event loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from agent.checks.base import CheckResult, Status
from agent.health.policy import CheckState

DEFAULT_SIZE = 120
MAX_TRANSITIONS = 200
MAX_EVENTS = 50
MAX_MESSAGE_CHARS = 500  # a long error text is kept once in the snapshot, clipped here


@dataclass(frozen=True, slots=True)
class Run:
    """One completed run: its own result (before hysteresis), so held flaps stay visible."""

    at: float  # wall-clock time the run was recorded
    status: Status
    latency_s: float
    message: str | None  # already redacted by ``run_check``


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a check's reported status (after hysteresis), as logged."""

    at: float
    check: str
    before: Status
    after: Status
    message: str | None
    is_first_run: bool  # ``before`` was the fail-closed "pending first check", not a real failure


@dataclass(frozen=True, slots=True)
class DrainEvent:
    """Readiness drained or undrained, and why (``admin``, ``signal SIGTERM``, ...)."""

    at: float
    is_draining: bool
    reason: str


def _clip(message: str | None) -> str | None:
    if message is None or len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[:MAX_MESSAGE_CHARS] + "…"


class History:
    def __init__(self, names: Iterable[str], *, size: int = DEFAULT_SIZE) -> None:
        if size <= 0:
            raise ValueError(f"history size must be > 0, got {size}")
        self.size = size
        self._runs: dict[str, deque[Run]] = {name: deque(maxlen=size) for name in names}
        self._transitions: deque[Transition] = deque(maxlen=MAX_TRANSITIONS)
        self._events: deque[DrainEvent] = deque(maxlen=MAX_EVENTS)

    # --- writes (the monitor only) -----------------------------------------------------------

    def record(self, result: CheckResult, *, before: CheckState, after: CheckState, at: float) -> None:
        """One run of ``after.name``, and a transition when its status changed."""
        message = _clip(result.message)
        self._runs[after.name].append(Run(at, result.status, result.latency_s, message))
        if after.status is not before.status:
            self._transitions.append(Transition(at, after.name, before.status, after.status, message, before.runs == 0))

    def record_drain(self, is_draining: bool, reason: str, *, at: float) -> None:
        self._events.append(DrainEvent(at, is_draining, reason))

    # --- reads -------------------------------------------------------------------------------

    def names(self) -> tuple[str, ...]:
        return tuple(self._runs)

    def runs(self, name: str) -> tuple[Run, ...]:
        """Oldest first; empty for an unknown check."""
        runs = self._runs.get(name)
        return tuple(runs) if runs is not None else ()

    def transitions(self) -> tuple[Transition, ...]:
        return tuple(self._transitions)

    def drain_events(self) -> tuple[DrainEvent, ...]:
        return tuple(self._events)
