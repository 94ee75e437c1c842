"""The agent's listeners inside the test's own event loop: the real main listener on a free port
and the admin app under aiohttp's test client, sharing one monitor and one registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent.app import create_admin_app, create_main, create_metrics, create_monitor
from agent.config import AgentConfig
from agent.health.monitor import Monitor
from agent.metrics import HttpMetrics


@dataclass
class InProcessAgent:
    main: aiohttp.ClientSession  # base_url = the main listener
    admin: Any  # aiohttp TestClient, or None when admin.enabled = false
    monitor: Monitor
    http_metrics: HttpMetrics
    main_url: str
    listener: Any = None  # agent.proxy.listener.MainListener


@asynccontextmanager
async def in_process_agent(
    config: AgentConfig,
    aiohttp_client: Callable[..., Awaitable[Any]],
    *,
    monitor: Monitor | None = None,
    start_monitor: bool = False,
) -> AsyncIterator[InProcessAgent]:
    monitor = monitor or create_monitor(config)
    registry, http_metrics = create_metrics(config, monitor)
    listener = create_main(config, monitor, registry, http_metrics)
    host, port = await listener.start("127.0.0.1", 0)
    admin = await aiohttp_client(create_admin_app(config, monitor, registry)) if config.admin.enabled else None
    if start_monitor:
        monitor.start()
    session = aiohttp.ClientSession(base_url=f"http://{host}:{port}")
    try:
        yield InProcessAgent(session, admin, monitor, http_metrics, f"http://{host}:{port}", listener)
    finally:
        await session.close()
        await listener.close(1.0)
        if start_monitor:
            await monitor.stop()
