"""The one place where things are wired together: monitor, metrics, the admin app, the main listener.

The admin app is imported only when one is created (``admin.enabled``); neither listener loads
aiohttp (the demo app and the tests do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from agent.checks import make_check
from agent.config import AgentConfig
from agent.health.monitor import Monitor, ScheduledCheck
from agent.metrics import HttpMetrics, create_registry, make_metrics_page
from agent.metrics.tracing import TracingCollector
from agent.proxy.listener import MainListener
from agent.proxy.main import create_main_listener
from agent.secrets import Redactor
from agent.tracing import Tracer

if TYPE_CHECKING:
    from agent.admin.app import AdminApp

__all__ = ["create_admin_app", "create_main", "create_metrics", "create_monitor", "create_tracer"]


def create_monitor(config: AgentConfig) -> Monitor:
    scheduled = []
    for check_config in config.checks:
        check, close = make_check(check_config)
        scheduled.append(ScheduledCheck(check_config, check, close))
    return Monitor(
        scheduled,
        Redactor(config.secrets()),
        max_loop_lag_s=config.health.max_loop_lag_s,
        default_interval_s=config.health.interval_s,
        history_size=config.health.history_size,
    )


def create_admin_app(
    config: AgentConfig, monitor: Monitor, registry: CollectorRegistry, *, tunnels_open: Callable[[], int] = lambda: 0
) -> AdminApp:
    """The admin listener's app (:func:`agent.admin.app.create_admin_app`), imported on first use."""
    from agent.admin.app import create_admin_app as build

    return build(config, monitor, registry, tunnels_open=tunnels_open)


def create_metrics(config: AgentConfig, monitor: Monitor) -> tuple[CollectorRegistry, HttpMetrics]:
    """The registry both listeners share, and the HTTP metrics the main listener feeds."""
    return create_registry(config, monitor)


def create_main(
    config: AgentConfig, monitor: Monitor, registry: CollectorRegistry, http_metrics: HttpMetrics, tracer: Tracer | None = None
) -> MainListener:
    """The main listener: health endpoints, the proxy, and ``/metrics`` when the admin listener is off."""
    page = None if config.admin.enabled else make_metrics_page(registry)
    return create_main_listener(config, monitor, metrics=http_metrics, metrics_page=page, tracer=tracer)


def create_tracer(config: AgentConfig, registry: CollectorRegistry) -> Tracer | None:
    """The span exporter when ``tracing.enabled`` (the otlp extra is there: the config checked)."""
    if not config.tracing.enabled:
        return None
    tracer = Tracer(config.tracing)
    registry.register(TracingCollector(tracer))
    return tracer
