"""The agent's own error responses: JSON with ``error_id``, logged once with the same id.

Expected failures map to a status and a safe message; anything else is a 500 whose body carries
only the ``error_id`` (the traceback goes to the log under the same id).
"""

from __future__ import annotations

import logging
import time
import uuid

import orjson
from aiohttp import web

from agent.logs import request_id_var, rfc3339

log = logging.getLogger("agent.errors")

MESSAGES = {
    "UPSTREAM_UNAVAILABLE": "The upstream service is unavailable.",
    "UPSTREAM_TIMEOUT": "The upstream service did not answer in time.",
    "PAYLOAD_TOO_LARGE": "The request body is too large.",
    "OVERLOADED": "Too many requests in flight; retry shortly.",
    "BAD_REQUEST": "The request is malformed.",
    "INTERNAL_ERROR": "An internal error occurred.",
    "NOT_FOUND": "Not found.",
    "METHOD_NOT_ALLOWED": "Method not allowed.",
    "UNAUTHORIZED": "A valid bearer token is required.",
}


def error_body(error_code: str, message: str | None = None, *, error_id: str | None = None) -> tuple[str, bytes]:
    error_id = error_id or str(uuid.uuid4())
    body = {
        "error_id": error_id,
        "error_code": error_code,
        "message": message or MESSAGES.get(error_code, error_code),
        "timestamp": rfc3339(time.time()),
        "request_id": request_id_var.get(),
    }
    return error_id, orjson.dumps(body)


def error_response(
    status: int,
    error_code: str,
    message: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    log_level: int = logging.WARNING,
    exc_info: BaseException | None = None,
    **log_fields: object,
) -> web.Response:
    """Build the JSON error and log it once with the same ``error_id``."""
    error_id, body = error_body(error_code, message)
    log.log(
        log_level,
        "request failed",
        exc_info=exc_info,
        extra={"error_id": error_id, "error_code": error_code, "status": status, **log_fields},
    )
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    response.headers["X-Error-ID"] = error_id
    response.headers["Cache-Control"] = "no-store"
    return response
