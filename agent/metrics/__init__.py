"""Prometheus metrics (SPEC §6): a registry owned by the app, bounded HTTP metrics, health state."""

from __future__ import annotations

from agent.metrics.exposition import make_metrics_page
from agent.metrics.http import HttpMetrics
from agent.metrics.registry import create_registry
from agent.metrics.routes import RouteFolder

__all__ = [
    "HttpMetrics",
    "RouteFolder",
    "create_registry",
    "make_metrics_page",
]
