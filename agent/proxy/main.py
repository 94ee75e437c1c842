"""Builds the main listener (proxy + health endpoints) from the config."""

from __future__ import annotations

import logging

from agent.config import AgentConfig
from agent.metrics.http import HttpMetrics
from agent.proxy.access_log import AccessLog
from agent.proxy.context import NoMetrics, ProxyContext
from agent.proxy.listener import MainListener
from agent.proxy.local import HealthState, MetricsPage
from agent.proxy.settings import proxy_settings
from agent.proxy.upstream import UpstreamPool
from agent.tracing import Tracer


def create_main_listener(
    config: AgentConfig,
    state: HealthState,
    *,
    metrics: HttpMetrics | None = None,
    metrics_page: MetricsPage | None = None,
    tracer: Tracer | None = None,
) -> MainListener:
    settings = proxy_settings(config)
    upstream = settings.upstream
    pool = UpstreamPool.from_url(
        upstream.url,
        max_connections=upstream.max_connections,
        connect_timeout_s=upstream.connect_timeout_s,
        idle_timeout_s=upstream.idle_timeout_s,
        tls=upstream.tls,
        server_name=upstream.server_name,
    )
    ctx = ProxyContext(
        settings=settings,
        state=state,
        pool=pool,
        access_log=AccessLog(enabled=settings.access_log, direct=settings.access_log_direct),
        metrics=metrics or NoMetrics(),
        metrics_page=metrics_page,
        tracer=tracer,
    )
    logging.getLogger("agent.proxy").debug("main listener configured", extra={"upstream": upstream.url})
    return MainListener(ctx)
