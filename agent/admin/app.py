"""The admin listener's aiohttp application: full health details, ``/status``, drain, ``/metrics``.

Everything here adapts ``agent.rules`` (ids, security headers, errors, the access-log event) to
aiohttp; the rules themselves are the main listener's too.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from agent import __version__
from agent.admin.access_log import make_access_log_middleware
from agent.admin.auth import AdminAuth
from agent.admin.context import make_request_context_middleware
from agent.admin.errors import errors_middleware
from agent.admin.health import add_health_routes
from agent.admin.hooks import make_request_id_hook, make_security_headers_hook, security_headers_rule
from agent.admin.log_level import LogLevel, add_log_level_routes
from agent.admin.metrics import make_metrics_handler
from agent.admin.status import add_status_routes
from agent.config import AgentConfig
from agent.health.monitor import Monitor
from agent.rules.ids import RequestIdRule

MONITOR_KEY = web.AppKey("monitor", Monitor)
CONFIG_KEY = web.AppKey("config", AgentConfig)


def admin_middlewares(config: AgentConfig, auth: AdminAuth) -> list[Middleware]:
    """Outermost first: request context, then the access log (which sees final statuses), then
    errors, then the gate every state-changing request passes (401/403 logged like any error)."""
    rule = RequestIdRule(config.request_id.header, config.request_id.pattern)
    middlewares: list[Middleware] = [make_request_context_middleware(rule)]
    if config.logging.access_log:
        middlewares.append(make_access_log_middleware(config.logging.skip_paths))
    middlewares.append(errors_middleware)
    middlewares.append(auth.middleware)
    return middlewares


def add_response_hooks(app: web.Application, config: AgentConfig) -> None:
    """The request id, then the security headers, on every response (``on_response_prepare``)."""
    app.on_response_prepare.append(make_request_id_hook(config.request_id.header))
    app.on_response_prepare.append(make_security_headers_hook(security_headers_rule(config.security_headers)))


def create_admin_app(
    config: AgentConfig, monitor: Monitor, registry: CollectorRegistry, *, tunnels_open: Callable[[], int] = lambda: 0
) -> web.Application:
    """Full health details, ``/status``, history and drain (behind ``admin.token`` when set; every
    change loopback-only without it), and ``/metrics``."""
    auth = AdminAuth(config.admin.token.reveal().encode())
    public = config.health.public_details

    def detail(request: web.Request) -> str:
        return "full" if auth.allows(request) else public

    app = web.Application(middlewares=admin_middlewares(config, auth))
    app[MONITOR_KEY] = monitor
    app[CONFIG_KEY] = config
    add_health_routes(
        app,
        monitor,
        prefix=config.health.path_prefix,
        version=__version__,
        detail=detail,
        check_types={c.name: c.type for c in config.checks},
        allow_exclude=True,
    )
    app.router.add_get(config.metrics.path, make_metrics_handler(registry))
    add_status_routes(
        app,
        monitor,
        auth,
        health_prefix=config.health.path_prefix,
        metrics_path=config.metrics.path,
        version=__version__,
        tunnels_open=tunnels_open,
    )
    add_log_level_routes(app, auth, LogLevel(config.logging.level))
    add_response_hooks(app, config)
    return app
