"""Builds the main listener (proxy + health endpoints) from the config."""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.config import AgentConfig
from agent.health.monitor import Monitor
from agent.proxy.access_log import AccessLog
from agent.proxy.context import HttpMetricsHook, NoMetrics, ProxyContext, ProxyLimits
from agent.proxy.listener import MainListener
from agent.proxy.upstream import UpstreamPool


def create_main_listener(
    config: AgentConfig,
    monitor: Monitor,
    *,
    metrics: HttpMetricsHook | None = None,
    metrics_page: Callable[[bytes], tuple[bytes, bytes]] | None = None,
) -> MainListener:
    proxy = config.proxy
    upstream = config.upstream
    pool = UpstreamPool.from_url(
        upstream.url,
        max_connections=upstream.max_connections,
        connect_timeout_s=upstream.connect_timeout_s,
        # Below the common app-server keep-alive (uvicorn 5 s), so the app never closes a
        # connection the agent is about to reuse.
        idle_timeout_s=4.0,
    )
    # Access lines skip the logging machinery unless a file handler must see them too.
    access_log = AccessLog(enabled=config.logging.access_log, direct=not config.logging.file and config.logging.format == "json")
    limits = ProxyLimits(
        max_body_bytes=proxy.max_body_bytes,
        max_in_flight=proxy.max_in_flight,
        read_timeout_s=upstream.read_timeout_s,
        header_timeout_s=proxy.header_timeout_s,
        body_timeout_s=proxy.body_timeout_s,
        min_body_rate_bytes_s=proxy.min_body_rate_bytes_s,
        keepalive_timeout_s=proxy.keepalive_timeout_s,
    )
    ctx = ProxyContext(
        config=config,
        monitor=monitor,
        pool=pool,
        access_log=access_log,
        limits=limits,
        metrics=metrics or NoMetrics(),
        metrics_page=metrics_page,
    )
    logging.getLogger("agent.proxy").debug("main listener configured", extra={"upstream": upstream.url})
    return MainListener(ctx)
