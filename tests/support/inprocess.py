"""The agent's listeners inside the test's own event loop: the real main listener and the real
admin listener on free ports, sharing one monitor and one registry; and
"scripted" checks, whose results the test sets by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent.app import create_admin_app, create_main, create_metrics, create_monitor
from agent.checks.base import CheckResult, failed, passed
from agent.config import AgentConfig, build_config
from agent.health.monitor import Monitor, ScheduledCheck
from agent.metrics import HttpMetrics
from agent.secrets import Redactor
from tests.support.admin_client import AdminClient, serve_admin
from tests.support.polling import async_wait_until

ADMIN_TOKEN = "s3cret-admin-token"


@dataclass
class InProcessAgent:
    main: aiohttp.ClientSession  # base_url = the main listener
    admin: AdminClient | None  # None when admin.enabled = false
    monitor: Monitor
    http_metrics: HttpMetrics
    main_url: str
    listener: Any = None  # agent.proxy.listener.MainListener


@asynccontextmanager
async def in_process_agent(
    config: AgentConfig,
    *,
    monitor: Monitor | None = None,
    start_monitor: bool = False,
) -> AsyncIterator[InProcessAgent]:
    monitor = monitor or create_monitor(config)
    registry, http_metrics = create_metrics(config, monitor)
    listener = create_main(config, monitor, registry, http_metrics)
    host, port = await listener.start("127.0.0.1", 0)
    admin = (
        await serve_admin(create_admin_app(config, monitor, registry, tunnels_open=lambda: http_metrics.tunnels_open))
        if config.admin.enabled
        else None
    )
    if start_monitor:
        monitor.start()
    session = aiohttp.ClientSession(base_url=f"http://{host}:{port}")
    try:
        yield InProcessAgent(session, admin, monitor, http_metrics, f"http://{host}:{port}", listener)
    finally:
        await session.close()
        if admin is not None:
            await admin.close()
        await listener.close(1.0)
        if start_monitor:
            await monitor.stop()


# --------------------------------------------------------------------------- scripted checks


def scripted_config(**overrides: dict[str, Any]) -> AgentConfig:
    """Two tcp checks whose results the test scripts: ``database`` (critical) and ``cache`` (not
    critical); upstream and disk off; a run every 50 ms, one failure flips a status. ``overrides``
    are merged into their sections."""
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


def scripted_results() -> dict[str, CheckResult]:
    """The database passes; the cache fails with a message that holds a password."""
    return {
        "database": passed(server_version="15.18", in_recovery=False, connections_used_ratio=0.1),
        "cache": failed("connection refused to redis://:hunter2@cache:6379"),
    }


def scripted_monitor(config: AgentConfig, results: dict[str, CheckResult]) -> Monitor:
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


@asynccontextmanager
async def scripted_agent(results: dict[str, CheckResult], **overrides: dict[str, Any]) -> AsyncIterator[InProcessAgent]:
    """An in-process agent on ``scripted_config(**overrides)``, its monitor running, entered once
    every check has run."""
    config = scripted_config(**overrides)
    monitor = scripted_monitor(config, results)
    async with in_process_agent(config, monitor=monitor, start_monitor=True) as agent:
        assert await async_wait_until(lambda: monitor.snapshot.started and all(c.runs for c in monitor.snapshot.checks)), (
            "the scripted checks never all ran"
        )
        yield agent
