"""The one place where things are wired together: the main and admin aiohttp applications."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent import __version__
from agent.checks import make_check
from agent.config import AgentConfig
from agent.health.monitor import Monitor, ScheduledCheck
from agent.health.routes import add_health_routes
from agent.middlewares.access_log import make_access_log_middleware
from agent.middlewares.errors import errors_middleware
from agent.middlewares.request_context import make_request_context_middleware, make_request_id_hook
from agent.middlewares.security_headers import make_security_headers_hook
from agent.proxy.forward import UPSTREAM_MS_KEY, Forwarder, make_client_session
from agent.secrets import Redactor

MONITOR_KEY = web.AppKey("monitor", Monitor)
CONFIG_KEY = web.AppKey("config", AgentConfig)
FORWARDER_KEY = web.AppKey("forwarder", Forwarder)


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
    )


def _check_types(config: AgentConfig) -> dict[str, str]:
    return {c.name: c.type for c in config.checks}


def _common_middlewares(config: AgentConfig) -> list[Middleware]:
    """Outermost first: request context, then the access log (which sees final statuses), then errors."""
    middlewares: list[Middleware] = [
        make_request_context_middleware(header=config.request_id.header, pattern=config.request_id.pattern)
    ]
    if config.logging.access_log:
        middlewares.append(make_access_log_middleware(config.logging.skip_paths, upstream_ms_key=UPSTREAM_MS_KEY))
    middlewares.append(errors_middleware)
    return middlewares


def create_main_app(config: AgentConfig, monitor: Monitor) -> web.Application:
    """Health endpoints under ``health.path_prefix``; everything else is proxied to the upstream."""

    async def close_while_draining(request: web.Request, response: web.StreamResponse) -> None:
        # Runs after aiohttp prepared the headers and before they are written, for streamed
        # responses too: clients reconnect elsewhere (like Envoy's drain GOAWAY).
        if monitor.draining:
            response.force_close()
            response.headers["Connection"] = "close"

    app = web.Application(middlewares=_common_middlewares(config), handler_args={"max_field_size": 8190, "max_line_size": 8190})
    app[MONITOR_KEY] = monitor
    app[CONFIG_KEY] = config
    public = config.health.public_details
    add_health_routes(
        app,
        monitor,
        prefix=config.health.path_prefix,
        version=__version__,
        detail=lambda request: public,
        check_types=_check_types(config),
        allow_exclude=False,
    )

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        session = make_client_session(config.upstream)
        app[FORWARDER_KEY] = Forwarder(session, config.upstream, config.proxy, request_id_header=config.request_id.header)
        yield
        await session.close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        return await request.app[FORWARDER_KEY](request)

    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", proxy)
    _add_response_hooks(app, config)
    app.on_response_prepare.append(close_while_draining)
    return app


def create_admin_app(config: AgentConfig, monitor: Monitor) -> web.Application:
    """Full health details (behind ``admin.token`` when set)."""
    token = config.admin.token.reveal().encode()
    public = config.health.public_details

    def detail(request: web.Request) -> str:
        if not token:
            return "full"
        return "full" if is_authorized(request, token) else public

    app = web.Application(middlewares=_common_middlewares(config))
    app[MONITOR_KEY] = monitor
    app[CONFIG_KEY] = config
    add_health_routes(
        app,
        monitor,
        prefix=config.health.path_prefix,
        version=__version__,
        detail=detail,
        check_types=_check_types(config),
        allow_exclude=True,
    )
    _add_response_hooks(app, config)
    return app


def _add_response_hooks(app: web.Application, config: AgentConfig) -> None:
    app.on_response_prepare.append(make_request_id_hook(config.request_id.header))
    app.on_response_prepare.append(make_security_headers_hook(config.security_headers))


def is_authorized(request: web.Request, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)
