"""One JSON access-log line per request (SPEC §9), skipping probe and scrape paths."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger("agent.access")

MAX_LOGGED_CHARS = 512  # a client-controlled value never dominates a log record


def _body_bytes(response: web.StreamResponse | None) -> int:
    if response is None:
        return 0
    if isinstance(response, web.Response):
        return response.content_length or 0
    return response.content_length if response.content_length is not None else response.body_length


def make_access_log_middleware(skip_paths: Iterable[str]) -> Middleware:
    skip = frozenset(skip_paths)

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in skip:
            return await handler(request)
        started = time.perf_counter()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            log.info(
                "request completed",
                extra={
                    "method": request.method[:16],
                    "path": request.path[:MAX_LOGGED_CHARS],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "bytes_sent": _body_bytes(response),
                    "client_ip": request.remote,
                    "user_agent": request.headers.get("User-Agent", "")[:MAX_LOGGED_CHARS],
                    "upstream_ms": None,  # the admin listener proxies nothing
                },
            )

    return access_log
