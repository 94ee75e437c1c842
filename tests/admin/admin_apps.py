"""The real admin application (``create_admin_app``) with extra routes a test needs, and a config."""

from __future__ import annotations

import re
from typing import Any

from agent.admin.app import AdminApp, create_admin_app
from agent.admin.http import Handler
from agent.app import create_metrics, create_monitor
from agent.config import AgentConfig, build_config

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def make_config(**sections: dict[str, Any]) -> AgentConfig:
    """Defaults without checks (nothing to probe), plus ``sections``."""
    table: dict[str, Any] = {"checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}}}
    table.update(sections)
    return build_config(table, {}, "test")


def admin_app(config: AgentConfig, routes: dict[str, Handler] | None = None) -> AdminApp:
    """``create_admin_app`` as the server builds it, plus ``routes`` (GET) behind the same rules."""
    monitor = create_monitor(config)
    registry, _ = create_metrics(config, monitor)
    app = create_admin_app(config, monitor, registry)
    for path, handler in (routes or {}).items():
        app.get(path, handler)
    return app
