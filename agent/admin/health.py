"""The four health endpoints. They only read the monitor's snapshot: no I/O, no awaits on checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.admin.http import Request, Response
from agent.health.monitor import Monitor
from agent.health.render import (
    dumps,
    health_body,
    health_json_body,
    live_body,
    ready_body,
    startup_body,
)

if TYPE_CHECKING:
    from agent.admin.app import AdminApp

HEALTH_JSON = "application/health+json"
NO_STORE = {"Cache-Control": "no-store"}

DetailPolicy = Callable[[Request], str]


def _json(status: int, body: bytes, content_type: str = "application/json") -> Response:
    return Response(status, body, content_type=content_type, headers=NO_STORE)


def add_health_routes(
    app: AdminApp,
    monitor: Monitor,
    *,
    prefix: str,
    version: str,
    detail: DetailPolicy,
    check_types: dict[str, str],
    allow_exclude: bool,
) -> None:
    """Register ``{prefix}``, ``{prefix}/live``, ``/ready`` and ``/startup`` (GET and HEAD)."""

    async def live(request: Request) -> Response:
        return _json(*live_body(monitor.liveness_problem()))

    async def ready(request: Request) -> Response:
        return _json(*ready_body(monitor.snapshot, monitor.draining))

    async def startup(request: Request) -> Response:
        return _json(*startup_body(monitor.snapshot))

    async def health(request: Request) -> Response:
        level = detail(request)
        exclude = frozenset(request.query_all("exclude")) if allow_exclude else frozenset()
        if HEALTH_JSON in ",".join(request.headers.getall("Accept")):
            code, body = health_json_body(
                monitor.snapshot, detail=level, version=version, check_types=check_types, exclude=exclude
            )
            return _json(code, dumps(body), HEALTH_JSON)
        code, body = health_body(
            monitor.snapshot,
            draining=monitor.draining,
            detail=level,
            version=version,
            started_at=monitor.started_at,
            now=time.time(),
            exclude=exclude,
        )
        return _json(code, dumps(body))

    for path, handler in ((prefix, health), (f"{prefix}/live", live), (f"{prefix}/ready", ready), (f"{prefix}/startup", startup)):
        app.get(path, handler)
