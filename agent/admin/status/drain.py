"""``POST /admin/drain`` and ``POST /admin/undrain``: readiness by hand, like Envoy's
``/healthcheck/fail`` and ``/healthcheck/ok``.

Draining makes ``/health/ready`` answer 503 on both listeners while the agent keeps serving, so a
load balancer or Kubernetes takes the pod out of rotation without restarting it. Undrain only
undoes an admin drain: a drain begun by SIGTERM is a shutdown, and undraining it would send
traffic to a pod about to close its listeners (409).
"""

from __future__ import annotations

import logging

from agent.admin.errors import error_response
from agent.admin.http import Handler, Request, Response
from agent.health.monitor import Monitor
from agent.health.policy import is_ready
from agent.health.render import dumps

log = logging.getLogger("agent.admin")

ADMIN_REASON = "admin"


def _state(monitor: Monitor) -> Response:
    body = {
        "draining": monitor.draining,
        "reason": monitor.drain_reason,
        "ready": is_ready(monitor.snapshot, monitor.draining),
    }
    return Response(200, dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})


def make_drain_handlers(monitor: Monitor) -> tuple[Handler, Handler]:
    """``(drain, undrain)``; both answer the drain state after the call."""

    async def drain(request: Request) -> Response:
        is_change = not monitor.draining
        if is_change:  # an ongoing drain keeps its reason: an admin drain never masks a SIGTERM
            monitor.set_draining(True, ADMIN_REASON)
        log.warning(
            "admin drain requested",
            extra={"action": "drain", "changed": is_change, "reason": monitor.drain_reason, "client_ip": request.peer},
        )
        return _state(monitor)

    async def undrain(request: Request) -> Response:
        if monitor.draining and monitor.drain_reason != ADMIN_REASON:
            return error_response(
                request,
                409,
                "CONFLICT",
                f"The agent is shutting down ({monitor.drain_reason}); only an admin drain can be undone.",
                action="undrain",
                reason=monitor.drain_reason,
            )
        is_change = monitor.draining
        if is_change:
            monitor.set_draining(False, ADMIN_REASON)
        log.warning("admin undrain requested", extra={"action": "undrain", "changed": is_change, "client_ip": request.peer})
        return _state(monitor)

    return drain, undrain
