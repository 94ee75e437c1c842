"""The admin listener's access log: one line per request, the event of ``agent.rules.access``.

The same keys as the main listener (SPEC §9), ``upstream_ms`` always null: the admin listener
proxies nothing. Paths in ``logging.skip_paths`` (probes, scrapes) are not logged. The line goes
through ``logging`` (the ``agent.access`` logger), like the main listener's when it writes to a
file, so the log's handlers render it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from agent.admin.context import IDS_KEY
from agent.rules.access import LOGGER_NAME, access_event

log = logging.getLogger(LOGGER_NAME)

# Written by the log renderer itself (agent.logs.record_fields).
_RENDERED_KEYS = frozenset({"timestamp", "level", "logger", "message"})


def _bytes_sent(response: web.StreamResponse | None) -> int:
    if response is None:
        return 0
    if isinstance(response, web.Response):
        return response.content_length or 0
    return response.content_length if response.content_length is not None else response.body_length


def write_access_event(event: dict[str, Any]) -> None:
    """One event through ``logging``: its fixed keys come from the record, the rest as fields."""
    log.info(event["message"], extra={k: v for k, v in event.items() if k not in _RENDERED_KEYS})


def make_access_log_middleware(skip_paths: Iterable[str]) -> Middleware:
    skip = frozenset(skip_paths)

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in skip:
            return await handler(request)
        started = time.perf_counter()
        status, aborted = 500, False
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:  # the client went away mid-request
            aborted = True
            raise
        finally:
            ids = request.get(IDS_KEY)
            event = access_event(
                request_id=ids.request_id if ids is not None else None,
                trace_id=ids.trace_id if ids is not None else None,
                method=request.method,
                path=request.path,
                status=status,
                duration_s=time.perf_counter() - started,
                bytes_sent=_bytes_sent(response),
                client_ip=request.remote,
                user_agent=request.headers.get("User-Agent", ""),
                upstream_s=None,
                aborted=aborted,
            )
            write_access_event(event)

    return access_log
