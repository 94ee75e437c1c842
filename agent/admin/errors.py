"""Turns aiohttp's HTTP exceptions and unexpected exceptions into the agent's JSON errors."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.errors import error_response

_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODES.get(exc.status, "BAD_REQUEST" if exc.status < 500 else "INTERNAL_ERROR")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate", "Retry-After")}
        level = logging.INFO if exc.status < 500 else logging.ERROR
        return error_response(exc.status, code, headers=headers, log_level=level, method=request.method, path=request.path)
    except Exception as exc:  # a bug in the agent: 500 with an error_id, traceback only in the log
        return error_response(
            500, "INTERNAL_ERROR", log_level=logging.ERROR, exc_info=exc, method=request.method, path=request.path
        )
