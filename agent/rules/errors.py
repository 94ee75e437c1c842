"""The error vocabulary of both listeners and the error document (SPEC §5).

One table: every ``error_code`` the agent sends, with its status and message. An error the agent
makes itself uses the code for its case (``OVERLOADED``, ``UPSTREAM_TIMEOUT``, ...); an app's
4xx/5xx JSON body without an ``error_code`` gets the code listed first for its status
(:func:`code_for_status`), so the same status reads the same on both listeners and from the app:
a 502 is ``UPSTREAM_UNAVAILABLE`` whoever answered it.
"""

from __future__ import annotations

import time
from typing import Any, Final, NamedTuple

import orjson

from agent.rules.clock import rfc3339
from agent.rules.ids import new_id


class ErrorCode(NamedTuple):
    code: str
    status: int
    message: str


ERROR_CODES: Final[tuple[ErrorCode, ...]] = (
    ErrorCode("BAD_REQUEST", 400, "The request is malformed."),
    ErrorCode("UNAUTHORIZED", 401, "A valid bearer token is required."),
    ErrorCode("FORBIDDEN", 403, "Forbidden."),
    ErrorCode("NOT_FOUND", 404, "Not found."),
    ErrorCode("METHOD_NOT_ALLOWED", 405, "Method not allowed."),
    ErrorCode("REQUEST_TIMEOUT", 408, "The request body did not arrive in time."),
    ErrorCode("CONFLICT", 409, "Conflict."),
    ErrorCode("GONE", 410, "Gone."),
    ErrorCode("PAYLOAD_TOO_LARGE", 413, "The request body is too large."),
    ErrorCode("URI_TOO_LONG", 414, "The request target is too long."),
    ErrorCode("UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported media type."),
    ErrorCode("VALIDATION_ERROR", 422, "The request is invalid."),
    ErrorCode("TOO_MANY_REQUESTS", 429, "Too many requests."),
    ErrorCode("HEADER_TOO_LARGE", 431, "The request head is too large."),
    ErrorCode("INTERNAL_ERROR", 500, "An internal error occurred."),
    ErrorCode("NOT_IMPLEMENTED", 501, "Not implemented."),
    ErrorCode("UPSTREAM_UNAVAILABLE", 502, "The upstream service is unavailable."),
    ErrorCode("SERVICE_UNAVAILABLE", 503, "The service is unavailable."),
    ErrorCode("OVERLOADED", 503, "Too many requests in flight; retry shortly."),
    ErrorCode("UPSTREAM_TIMEOUT", 504, "The upstream service did not answer in time."),
)
# Fallbacks for statuses without an entry, and for an app's non-JSON 5xx body the agent replaces.
CLIENT_ERROR: Final = ErrorCode("CLIENT_ERROR", 400, "Request failed.")
UPSTREAM_ERROR: Final = ErrorCode("UPSTREAM_ERROR", 502, "The upstream service failed.")

_BY_CODE: Final = {e.code: e for e in (*ERROR_CODES, CLIENT_ERROR, UPSTREAM_ERROR)}
_BY_STATUS: Final[dict[int, ErrorCode]] = {}
for _entry in ERROR_CODES:
    _BY_STATUS.setdefault(_entry.status, _entry)


def code_for_status(status: int) -> str:
    """The vocabulary's code for a status (the first listed for it), else ``CLIENT_ERROR``/``UPSTREAM_ERROR``."""
    entry = _BY_STATUS.get(status)
    if entry is not None:
        return entry.code
    return CLIENT_ERROR.code if status < 500 else UPSTREAM_ERROR.code


def message_for(code: str) -> str:
    entry = _BY_CODE.get(code)
    return entry.message if entry is not None else code


def error_document(
    code: str, *, request_id: str | None, message: str | None = None, error_id: str | None = None
) -> dict[str, Any]:
    """``{"error_id", "error_code", "message", "timestamp", "request_id"}`` with a new id unless given."""
    return {
        "error_id": error_id or new_id(),
        "error_code": code,
        "message": message or message_for(code),
        "timestamp": rfc3339(time.time()),
        "request_id": request_id,
    }


def error_json(
    code: str, *, request_id: str | None, message: str | None = None, error_id: str | None = None
) -> tuple[str, bytes]:
    """(error_id, the encoded error document)."""
    doc = error_document(code, request_id=request_id, message=message, error_id=error_id)
    return doc["error_id"], orjson.dumps(doc)
