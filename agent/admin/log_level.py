"""``GET``/``PUT /admin/log-level``: the agent's log level changed at runtime, reverting by itself
(Linkerd's ``/proxy-log-level``, Envoy's ``/logging``).

Only the agent's own loggers (``agent.*``) change: third-party libraries (asyncpg) keep
the configured level, so a DEBUG session never turns on their request or query dumps. The agent
logs no request bodies at any level. Every change is logged at WARNING with the peer that asked.
``PUT`` changes state, so the admin listener's rule applies (a token, or loopback without one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from agent.admin.auth import AdminAuth
from agent.admin.errors import error_response
from agent.admin.http import Request, Response
from agent.health.render import dumps
from agent.rules.clock import rfc3339

if TYPE_CHECKING:
    from agent.admin.app import AdminApp

log = logging.getLogger("agent.admin")

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_DURATION_S = 24 * 3600.0
DEFAULT_DURATION_S = 300.0


class LogLevel:
    """The ``agent`` logger's level, and when a temporary one reverts."""

    def __init__(self, configured: str) -> None:
        self.configured = configured
        self._logger = logging.getLogger("agent")
        self._revert: asyncio.TimerHandle | None = None
        self.reverts_at: float | None = None

    @property
    def level(self) -> str:
        return logging.getLevelName(self._logger.getEffectiveLevel())

    def state(self) -> dict[str, Any]:
        reverts_at = rfc3339(self.reverts_at) if self.reverts_at else None
        return {"level": self.level, "reverts_at": reverts_at, "configured": self.configured}

    def set(self, level: str, duration_s: float) -> None:
        if self._revert is not None:
            self._revert.cancel()
        self._logger.setLevel(level)
        self.reverts_at = time.time() + duration_s
        self._revert = asyncio.get_running_loop().call_later(duration_s, self.restore)

    def restore(self) -> None:
        self._revert = None
        self.reverts_at = None
        self._logger.setLevel(logging.NOTSET)  # back to the configured (root) level
        log.warning("log level reverted", extra={"level": self.level})


def parse_change(body: Any) -> tuple[str, float] | str:
    """(level, duration) from ``{"level": "DEBUG", "duration_s": 300}``, or the problem."""
    if not isinstance(body, dict) or set(body) - {"level", "duration_s"}:
        return 'expected {"level": "DEBUG", "duration_s": 300}'
    level = body.get("level")
    duration = body.get("duration_s", DEFAULT_DURATION_S)
    if not isinstance(level, str) or level.upper() not in LEVELS:
        return f"level must be one of {', '.join(LEVELS)}"
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not 0 < duration <= MAX_DURATION_S:
        return f"duration_s must be a number of seconds in (0, {MAX_DURATION_S:.0f}]"
    return level.upper(), float(duration)


def add_log_level_routes(app: AdminApp, auth: AdminAuth, control: LogLevel) -> None:
    async def show(request: Request) -> Response:
        return Response(200, dumps(control.state()), content_type="application/json", headers={"Cache-Control": "no-store"})

    async def change(request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        parsed = parse_change(body)
        if isinstance(parsed, str):
            return error_response(request, 400, "BAD_REQUEST", parsed)
        before = control.level
        control.set(*parsed)
        log.warning(
            "log level changed",
            extra={"from": before, "to": parsed[0], "duration_s": parsed[1], "client_ip": request.peer},
        )
        return await show(request)

    app.get("/admin/log-level", auth.require(show))
    app.put("/admin/log-level", change)  # the app applies the change rule to every PUT
