"""Checks: async callables returning a CheckResult; ``make_check`` builds one from its config.

``make_check`` is imported on first use: the check types pull in their clients (asyncpg,
psutil), and modules that only need the result types (the health policy, the proxy's local
answers) must not.
"""

from __future__ import annotations

from typing import Any

from agent.checks.base import Check, CheckResult, Status, run_check

__all__ = ["Check", "CheckResult", "Status", "make_check", "run_check"]


def __getattr__(name: str) -> Any:
    if name == "make_check":
        from agent.checks.factory import make_check

        return make_check
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
