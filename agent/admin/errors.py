"""The admin listener's own error responses, over ``agent.rules.errors`` (SPEC §5, STYLE rule 7).

:func:`error_response` builds the JSON error document of both listeners and logs it once with the
same ``error_id``. :class:`agent.admin.app.AdminApp` maps an :class:`~agent.admin.http.HttpError`
through the one vocabulary (:func:`~agent.rules.errors.code_for_status`) and anything else to a
500 ``INTERNAL_ERROR`` whose body carries only the ``error_id``; the traceback goes to the log
(ERROR, same ``error_id``).
"""

from __future__ import annotations

import logging

from agent.admin.http import Request, Response
from agent.rules.errors import error_json

log = logging.getLogger("agent.errors")


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    log_level: int = logging.WARNING,
    exc_info: BaseException | None = None,
    **log_fields: object,
) -> Response:
    """The JSON error (``X-Error-ID``, ``Cache-Control: no-store``), logged once with the same ``error_id``."""
    ids = request.ids
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
    fields = [*(headers or {}).items(), ("X-Error-ID", error_id), ("Cache-Control", "no-store")]
    return Response(status, body, content_type="application/json", headers=fields)
