"""The check abstraction: a check is an async callable returning a :class:`CheckResult`.

``run_check`` is the one place that turns a timeout or an exception into a failed result, with a
redacted message; a check itself only reports what it saw.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.secrets import Redactor


class Status(enum.StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


Observations = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: Status
    message: str | None = None
    observations: Observations = field(default_factory=dict)
    latency_s: float = 0.0


Check = Callable[[], Awaitable[CheckResult]]


def passed(message: str | None = None, **observations: Any) -> CheckResult:
    return CheckResult(Status.PASS, message, observations)


def warned(message: str, **observations: Any) -> CheckResult:
    return CheckResult(Status.WARN, message, observations)


def failed(message: str, **observations: Any) -> CheckResult:
    return CheckResult(Status.FAIL, message, observations)


def describe_error(exc: BaseException) -> str:
    """A short, stable description: the class name, and its text when it has one."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


async def run_check(check: Check, timeout_s: float, redact: Redactor) -> CheckResult:
    """Run one check under ``timeout_s``; never raises (except cancellation of the caller)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            result = await check()
    except TimeoutError:
        result = failed(f"timed out after {timeout_s:g}s")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a check's own failure is a result, not a crash
        result = failed(describe_error(exc))
    message = redact(result.message) if result.message else None
    return CheckResult(result.status, message, result.observations, time.perf_counter() - started)
