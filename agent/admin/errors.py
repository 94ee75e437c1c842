"""The admin listener's own error responses, over ``agent.rules.errors`` (SPEC §5, STYLE rule 7).

:func:`error_response` builds the JSON error document of both listeners and logs it once with the
same ``error_id``. :func:`errors_middleware` maps aiohttp's HTTP exceptions through the one
vocabulary (:func:`~agent.rules.errors.code_for_status`) and anything else to a 500
``INTERNAL_ERROR`` whose body carries only the ``error_id``; the traceback goes to the log
(ERROR, same ``error_id``).
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.admin.context import IDS_KEY
from agent.rules.errors import code_for_status, error_json

log = logging.getLogger("agent.errors")

# Headers of an aiohttp HTTP exception that still mean something on the JSON error.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


def error_response(
    request: web.Request,
    status: int,
    code: str,
    message: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    log_level: int = logging.WARNING,
    exc_info: BaseException | None = None,
    **log_fields: object,
) -> web.Response:
    """The JSON error (``X-Error-ID``, ``Cache-Control: no-store``), logged once with the same ``error_id``."""
    ids = request.get(IDS_KEY)
    request_id = ids.request_id if ids is not None else None
    error_id, body = error_json(code, request_id=request_id, message=message)
    log.log(
        log_level,
        "request failed",
        exc_info=exc_info,
        extra={
            "request_id": request_id,
            "trace_id": ids.trace_id if ids is not None else None,
            "error_id": error_id,
            "error_code": code,
            "status": status,
            "method": request.method,
            "path": request.path,
            **log_fields,
        },
    )
    response = web.Response(status=status, body=body, content_type="application/json", headers=headers)
    response.headers["X-Error-ID"] = error_id
    response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        level = logging.INFO if exc.status < 500 else logging.ERROR
        return error_response(request, exc.status, code_for_status(exc.status), headers=headers, log_level=level)
    except Exception as exc:  # a bug in the agent: 500 with an error_id, the traceback only in the log
        return error_response(request, 500, "INTERNAL_ERROR", log_level=logging.ERROR, exc_info=exc)
