"""Checks: async callables returning a CheckResult; ``make_check`` builds one from its config."""

from __future__ import annotations

from agent.checks.base import Check, CheckResult, Status, run_check
from agent.checks.factory import make_check

__all__ = ["Check", "CheckResult", "Status", "make_check", "run_check"]
