"""``create_registry(config, monitor)``: the application's own registry with every agent metric.

No import-time globals: each call builds a fresh ``CollectorRegistry`` (so tests and several apps
in one process never share series) holding the HTTP metrics, the health collector, build info,
start time and the standard ``process_*`` collector.
"""

from __future__ import annotations

import platform
from typing import Protocol

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector

from agent import __version__
from agent.config import AgentConfig
from agent.metrics.health import HealthCollector, MonitorView
from agent.metrics.http import HttpMetrics
from agent.metrics.routes import RouteFolder


class AgentMonitorView(MonitorView, Protocol):
    """The monitor attributes read at registry creation, on top of what the collector reads."""

    started_at: float


def fixed_routes(config: AgentConfig) -> tuple[str, ...]:
    """Paths served by the agent itself on the main listener; each is its own route value."""
    prefix = config.health.path_prefix
    return (prefix, f"{prefix}/live", f"{prefix}/ready", f"{prefix}/startup", config.metrics.path)


def create_registry(config: AgentConfig, monitor: AgentMonitorView) -> tuple[CollectorRegistry, HttpMetrics]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    build_info = Gauge(
        "agent_build_info",
        "Always 1; the labels say which agent and Python are running.",
        ("version", "python"),
        registry=registry,
    )
    build_info.labels(__version__, platform.python_version()).set(1)
    Gauge("agent_start_time_seconds", "Unix time the agent started.", registry=registry).set(monitor.started_at)
    registry.register(HealthCollector(monitor, {check.name: check.type for check in config.checks}))
    routes = RouteFolder(config.metrics.routes, max_routes=config.metrics.max_routes, fixed_routes=fixed_routes(config))
    return registry, HttpMetrics(registry, routes)
