"""In-process agents for the status tests: checks whose results the test sets by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agent.checks.base import CheckResult, failed, passed
from agent.config import AgentConfig, build_config
from agent.health.monitor import Monitor, ScheduledCheck
from agent.secrets import Redactor

TOKEN = "s3cret-admin-token"


def make_config(**overrides: dict[str, Any]) -> AgentConfig:
    table: dict[str, Any] = {
        "health": {"interval_s": 0.05, "failure_threshold": 1, "history_size": 30},
        "checks": {
            "upstream": {"enabled": False},
            "disk": {"enabled": False},
            "database": {"type": "tcp", "port": 5432, "critical": True},
            "cache": {"type": "tcp", "port": 6379, "critical": False},
        },
    }
    for section, values in overrides.items():
        table.setdefault(section, {}).update(values)
    return build_config(table, {}, "test")


def make_monitor(config: AgentConfig, results: dict[str, CheckResult]) -> Monitor:
    """Each check answers whatever ``results[name]`` holds at the time it runs."""
    scheduled = []
    for check_config in config.checks:

        async def check(name: str = check_config.name) -> CheckResult:
            return results[name]

        scheduled.append(ScheduledCheck(check_config, check))
    return Monitor(
        scheduled,
        Redactor(config.secrets()),
        max_loop_lag_s=1.0,
        default_interval_s=0.1,
        history_size=config.health.history_size,
    )


def default_results() -> dict[str, CheckResult]:
    return {
        "database": passed(server_version="15.18"),
        "cache": failed("connection refused to redis://:hunter2@cache:6379"),
    }


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
