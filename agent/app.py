"""The one place where things are wired together: monitor, metrics, the admin app, the main listener."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from agent import __version__
from agent.checks import make_check
from agent.config import AgentConfig
from agent.health.monitor import Monitor, ScheduledCheck
from agent.health.routes import add_health_routes
from agent.metrics import HttpMetrics, create_registry, make_metrics_handler, make_metrics_page
from agent.middlewares.access_log import make_access_log_middleware
from agent.middlewares.errors import errors_middleware
from agent.middlewares.request_context import make_request_context_middleware, make_request_id_hook
from agent.middlewares.security_headers import make_security_headers_hook
from agent.proxy.listener import MainListener
from agent.proxy.main import create_main_listener
from agent.secrets import Redactor
from agent.status import AdminAuth, add_status_routes

MONITOR_KEY = web.AppKey("monitor", Monitor)
CONFIG_KEY = web.AppKey("config", AgentConfig)


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


def create_metrics(config: AgentConfig, monitor: Monitor) -> tuple[CollectorRegistry, HttpMetrics]:
    """The registry both listeners share, and the HTTP metrics the main listener feeds."""
    return create_registry(config, monitor)


def create_main(config: AgentConfig, monitor: Monitor, registry: CollectorRegistry, http_metrics: HttpMetrics) -> MainListener:
    """The main listener: health endpoints, the proxy, and ``/metrics`` when the admin listener is off."""
    page = None if config.admin.enabled else make_metrics_page(registry)
    return create_main_listener(config, monitor, metrics=http_metrics, metrics_page=page)


def _admin_middlewares(config: AgentConfig) -> list[Middleware]:
    """Outermost first: request context, then the access log (which sees final statuses), then errors."""
    middlewares: list[Middleware] = [
        make_request_context_middleware(header=config.request_id.header, pattern=config.request_id.pattern)
    ]
    if config.logging.access_log:
        middlewares.append(make_access_log_middleware(config.logging.skip_paths))
    middlewares.append(errors_middleware)
    return middlewares


def create_admin_app(config: AgentConfig, monitor: Monitor, registry: CollectorRegistry) -> web.Application:
    """Full health details, ``/status``, history and drain (behind ``admin.token`` when set), and ``/metrics``."""
    auth = AdminAuth(config.admin.token.reveal().encode(), has_bearer=is_authorized)
    public = config.health.public_details

    def detail(request: web.Request) -> str:
        return "full" if auth.allows(request) else public

    app = web.Application(middlewares=_admin_middlewares(config))
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
        app, monitor, auth, health_prefix=config.health.path_prefix, metrics_path=config.metrics.path, version=__version__
    )
    app.on_response_prepare.append(make_request_id_hook(config.request_id.header))
    app.on_response_prepare.append(make_security_headers_hook(config.security_headers))
    return app


def is_authorized(request: web.Request, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)
