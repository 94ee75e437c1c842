"""Wires the status page, ``{health prefix}/history`` and ``/admin/drain|undrain`` onto the admin app.

Everything here is behind :class:`~agent.admin.auth.AdminAuth` when ``admin.token`` is set (drain
and undrain through the app's gate for changes, which also keeps them loopback-only without a token), and only
reads the monitor's snapshot and history (the drain handlers call ``set_draining``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.admin.auth import AdminAuth
from agent.admin.http import Request, Response
from agent.admin.status.drain import make_drain_handlers
from agent.admin.status.page import NO_STORE, add_page_routes
from agent.admin.status.render import history_body
from agent.health.monitor import Monitor
from agent.health.render import dumps

if TYPE_CHECKING:
    from agent.admin.app import AdminApp


def add_status_routes(
    app: AdminApp,
    monitor: Monitor,
    auth: AdminAuth,
    *,
    health_prefix: str,
    metrics_path: str,
    version: str,
    tunnels_open: Callable[[], int] = lambda: 0,
) -> None:
    async def history(request: Request) -> Response:
        body = history_body(
            monitor.history,
            monitor.snapshot,
            draining=monitor.draining,
            drain_reason=monitor.drain_reason,
            version=version,
            started_at=monitor.started_at,
            now=time.time(),
            tunnels_open=tunnels_open(),
        )
        return Response(200, dumps(body), content_type="application/json", headers=NO_STORE)

    app.get(f"{health_prefix}/history", auth.require(history))
    drain, undrain = make_drain_handlers(monitor)
    # POST only: any other method is answered 405 with ``Allow: POST``. Not wrapped here: the app
    # gates every state-changing request on the admin listener (SPEC §10).
    app.post("/admin/drain", drain)
    app.post("/admin/undrain", undrain)
    add_page_routes(app, auth, health_path=health_prefix, metrics_path=metrics_path, version=version)
