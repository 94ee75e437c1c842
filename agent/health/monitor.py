"""The monitor: runs every check on its own schedule and is the single writer of the snapshot.

Each check has one task (so one run at a time), its own interval with ±10 % jitter and its own
timeout. Readers (endpoints, metrics) only ever read ``monitor.snapshot``; nothing on a request
path or a scrape runs a check.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from agent.checks.base import Check, CheckResult, run_check
from agent.config import CheckConfig
from agent.health.history import DEFAULT_SIZE, History
from agent.health.policy import Snapshot, apply_result, initial_state, is_alive, next_snapshot
from agent.secrets import Redactor

log = logging.getLogger("agent.health")

WATCHDOG_PERIOD_S = 0.25
JITTER = 0.1


@dataclass(frozen=True, slots=True)
class ScheduledCheck:
    config: CheckConfig
    check: Check
    close: Callable[[], Awaitable[None]] | None = None


class Monitor:
    def __init__(
        self,
        checks: Sequence[ScheduledCheck],
        redactor: Redactor,
        *,
        max_loop_lag_s: float,
        default_interval_s: float,
        history_size: int = DEFAULT_SIZE,
    ) -> None:
        now = time.time()
        self._checks = list(checks)
        self._redact = redactor
        self.max_loop_lag_s = max_loop_lag_s
        shortest = min((c.config.interval_s for c in checks), default=default_interval_s)
        self.max_tick_age_s = 3 * max(shortest, WATCHDOG_PERIOD_S)
        self.started_at = now
        self.snapshot = Snapshot(
            checks=tuple(initial_state(c.config.name, c.config.critical, now) for c in checks),
            started=not any(c.config.critical for c in checks),
            taken_at=now,
        )
        self.history = History((c.config.name for c in checks), size=history_size)
        self.draining = False
        self.drain_reason: str | None = None
        self.loop_lag_s = 0.0
        self.last_tick = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.last_tick = time.monotonic()
        self._tasks.append(asyncio.create_task(self._watchdog(), name="monitor-watchdog"))
        for scheduled in self._checks:
            self._tasks.append(asyncio.create_task(self._run_forever(scheduled), name=f"check-{scheduled.config.name}"))

    async def stop(self) -> None:
        """Cancel every task, wait for them, then release what checks hold (bounded)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        closers = [c.close() for c in self._checks if c.close is not None]
        if closers:
            await asyncio.wait_for(asyncio.gather(*closers, return_exceptions=True), timeout=5.0)

    # --- state -------------------------------------------------------------------------------

    def set_draining(self, draining: bool, reason: str) -> None:
        """Flip readiness. Draining again with another reason replaces it: a SIGTERM during an
        admin drain makes it a shutdown drain, which ``/admin/undrain`` must not undo."""
        if draining != self.draining:
            self.draining = draining
            self.drain_reason = reason if draining else None
            log.warning("draining started" if draining else "draining stopped", extra={"reason": reason})
        elif draining and reason != self.drain_reason:
            log.warning("draining reason changed", extra={"from": self.drain_reason, "reason": reason})
            self.drain_reason = reason
        else:
            return
        self.history.record_drain(draining, reason, at=time.time())

    def liveness_problem(self) -> str | None:
        for task in self._tasks:
            if task.done():
                return f"monitor task {task.get_name()} stopped"
        return is_alive(
            now_mono=time.monotonic(),
            last_tick_mono=self.last_tick,
            max_tick_age_s=self.max_tick_age_s,
            loop_lag_s=self.loop_lag_s,
            max_loop_lag_s=self.max_loop_lag_s,
        )

    # --- tasks -------------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + WATCHDOG_PERIOD_S
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            self.loop_lag_s = max(0.0, loop.time() - expected)
            self.last_tick = time.monotonic()

    async def _run_forever(self, scheduled: ScheduledCheck) -> None:
        config = scheduled.config
        while True:
            result = await run_check(scheduled.check, config.timeout_s, self._redact)
            try:
                self._record(config, result)
            except Exception:  # a bug here must not silently stop this check's schedule
                log.exception("recording a check result failed", extra={"check": config.name})
            await asyncio.sleep(config.interval_s * random.uniform(1 - JITTER, 1 + JITTER))

    def _record(self, config: CheckConfig, result: CheckResult) -> None:
        now = time.time()
        before = self.snapshot.check(config.name)
        assert before is not None
        after = apply_result(
            before, result, failure_threshold=config.failure_threshold, success_threshold=config.success_threshold, now=now
        )
        was_started = self.snapshot.started
        self.snapshot = next_snapshot(self.snapshot, after, now)
        self.history.record(result, before=before, after=after, at=now)
        if after.status is not before.status:
            level = logging.INFO if after.is_up else logging.WARNING
            log.log(
                level,
                "check status changed",
                extra={"check": config.name, "from": str(before.status), "to": str(after.status), "check_message": after.message},
            )
        elif before.runs == 0:
            log.warning(
                "check failing at start",
                extra={"check": config.name, "status": str(after.status), "check_message": after.message},
            )
        if self.snapshot.started and not was_started:
            log.info("started: every critical check has passed once", extra={"after_s": round(now - self.started_at, 3)})
