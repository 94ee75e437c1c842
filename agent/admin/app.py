"""The admin listener's application: full health details, ``/status``, drain, ``/metrics``.

One request goes through, in order (outermost first): its ids and trace context
(:func:`~agent.rules.ids.resolve_ids_text`, the main listener's rule), the access log (which sees
final statuses), the errors (an :class:`~agent.admin.http.HttpError` or a bug becomes the JSON
error of ``agent.rules.errors``), the gate every state-changing request passes
(:class:`~agent.admin.auth.AdminAuth`), the route. Every response, errors included, then gets
the request id and the security headers (:mod:`agent.admin.hooks`). The server under it is
:mod:`agent.admin.http`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from agent import __version__
from agent.admin.access_log import write_access_event
from agent.admin.auth import SAFE_METHODS, AdminAuth
from agent.admin.errors import error_response
from agent.admin.health import add_health_routes
from agent.admin.hooks import add_request_id, add_security_headers
from agent.admin.http import AdminServer, Handler, Headers, HttpError, Refusal, Request, Response
from agent.admin.log_level import LogLevel, add_log_level_routes
from agent.admin.metrics import make_metrics_handler
from agent.admin.status import add_status_routes
from agent.config import AgentConfig
from agent.health.monitor import Monitor
from agent.logs import request_id_var, trace_id_var
from agent.rules.access import access_event
from agent.rules.errors import code_for_status
from agent.rules.ids import RequestIdRule, resolve_ids_text
from agent.rules.security_headers import SecurityHeaders

log = logging.getLogger("agent.admin")

# Headers of an HttpError that still mean something on the JSON error.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class AdminApp:
    """Routes (path -> method -> handler; a GET route answers HEAD too) and the rules every request passes."""

    def __init__(self, config: AgentConfig, auth: AdminAuth) -> None:
        self.auth = auth
        self.routes: dict[str, dict[str, Handler]] = {}
        self._rule = RequestIdRule(config.request_id.header, config.request_id.pattern)
        self._id_header = config.request_id.header
        self._security = SecurityHeaders.from_config(config.security_headers)
        self._access_log = config.logging.access_log
        self._skip = frozenset(config.logging.skip_paths)

    def add(self, method: str, path: str, handler: Handler) -> None:
        methods = self.routes.setdefault(path, {})
        methods[method] = handler
        if method == "GET":
            methods.setdefault("HEAD", handler)

    def get(self, path: str, handler: Handler) -> None:
        self.add("GET", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def put(self, path: str, handler: Handler) -> None:
        self.add("PUT", path, handler)

    def server(self) -> AdminServer:
        return AdminServer(self.handle, self.refuse)

    # --- one request ---------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        headers, rule = request.headers, self._rule
        ids = resolve_ids_text(rule, headers.get(rule.header), headers.get("traceparent"), headers.get("tracestate"))
        request.ids = ids
        rid_token = request_id_var.set(ids.request_id)
        tid_token = trace_id_var.set(ids.trace_id)
        try:
            if not self._access_log or request.path in self._skip:
                response = await self._answer(request)
            else:
                response = await self._logged(request)
        finally:
            request_id_var.reset(rid_token)
            trace_id_var.reset(tid_token)
        return response

    async def _logged(self, request: Request) -> Response:
        started = time.perf_counter()
        status, aborted, sent = 500, False, 0
        try:
            response = await self._answer(request)
            status, sent = response.status, len(response.body)
            return response
        except asyncio.CancelledError:  # the client went away mid-request
            aborted = True
            raise
        finally:
            ids = request.ids
            assert ids is not None
            event = access_event(
                request_id=ids.request_id,
                trace_id=ids.trace_id,
                method=request.method,
                path=request.path,
                status=status,
                duration_s=time.perf_counter() - started,
                bytes_sent=sent,
                client_ip=request.peer,
                user_agent=request.headers.get("User-Agent") or "",
                upstream_s=None,
                aborted=aborted,
            )
            write_access_event(event)

    async def _answer(self, request: Request) -> Response:
        try:
            handler = self._route(request)
            if request.method not in SAFE_METHODS:  # every change, whichever route: a 404 or 405 changes nothing
                refused = self.auth.refusal(request)
                if refused is not None:
                    return self._finish(request, refused)
            response = await handler(request)
        except HttpError as exc:
            headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
            level = logging.INFO if exc.status < 500 else logging.ERROR
            code = code_for_status(exc.status)
            response = error_response(request, exc.status, code, exc.message, headers=headers, log_level=level)
        except Exception as exc:  # a bug in the agent: 500 with an error_id, the traceback only in the log
            response = error_response(request, 500, "INTERNAL_ERROR", log_level=logging.ERROR, exc_info=exc)
        return self._finish(request, response)

    def _route(self, request: Request) -> Handler:
        methods = self.routes.get(request.path)
        if methods is None:
            raise HttpError(404)
        handler = methods.get(request.method)
        if handler is None:
            raise HttpError(405, headers={"Allow": ",".join(sorted(methods))})
        return handler

    def _finish(self, request: Request, response: Response) -> Response:
        """The request id, then the security headers: on every response the listener sends."""
        ids = request.ids
        if ids is not None:
            add_request_id(response, self._id_header, ids.request_id)
        add_security_headers(response, self._security, request.secure)
        return response

    def refuse(self, refusal: Refusal, peer: str | None, https: bool) -> Response:
        """A request the server refused before it had a route (bad framing, too large): new ids, logged."""
        request = Request("", "/", Headers(), peer=peer, secure=https)
        request.ids = resolve_ids_text(self._rule, None, None, None)
        response = error_response(
            request, refusal.status, refusal.code, log_level=logging.WARNING, reason=str(refusal)[:200], client_ip=peer
        )
        return self._finish(request, response)


def create_admin_app(
    config: AgentConfig, monitor: Monitor, registry: CollectorRegistry, *, tunnels_open: Callable[[], int] = lambda: 0
) -> AdminApp:
    """Full health details, ``/status``, history and drain (behind ``admin.token`` when set; every
    change loopback-only without it), and ``/metrics``."""
    auth = AdminAuth(config.admin.token.reveal().encode())
    public = config.health.public_details

    def detail(request: Request) -> str:
        return "full" if auth.allows(request) else public

    app = AdminApp(config, auth)
    add_health_routes(
        app,
        monitor,
        prefix=config.health.path_prefix,
        version=__version__,
        detail=detail,
        check_types={c.name: c.type for c in config.checks},
        allow_exclude=True,
    )
    app.get(config.metrics.path, make_metrics_handler(registry))
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
    return app
