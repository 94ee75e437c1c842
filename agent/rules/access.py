"""The access-log event (SPEC §9): one line per request, the same keys on both listeners.

Client-controlled values are clipped so they never dominate a line; JSON string escaping (the
log renderer) keeps CR/LF from starting a new one.
"""

from __future__ import annotations

import time
from typing import Any, Final

from agent.rules.clock import rfc3339

LOGGER_NAME: Final = "agent.access"
MESSAGE: Final = "request completed"
MAX_METHOD_CHARS: Final = 16
MAX_LOGGED_CHARS: Final = 512


def access_event(
    *,
    request_id: str | None,
    trace_id: str | None,
    method: str,
    path: str,
    status: int,
    duration_s: float,
    bytes_sent: int,
    client_ip: str | None,
    user_agent: str,
    upstream_s: float | None,
    aborted: bool = False,
    client_cert_subject: str | None = None,
) -> dict[str, Any]:
    """The event as it is written: fixed keys first (``timestamp``, ``level``, ``logger``, ``message``)."""
    event: dict[str, Any] = {
        "timestamp": rfc3339(time.time()),
        "level": "INFO",
        "logger": LOGGER_NAME,
        "message": MESSAGE,
        "request_id": request_id,
        "trace_id": trace_id,
        "method": method[:MAX_METHOD_CHARS],
        "path": path[:MAX_LOGGED_CHARS],
        "status": status,
        "duration_ms": round(duration_s * 1000, 3),
        "bytes_sent": bytes_sent,
        "client_ip": client_ip,
        "user_agent": user_agent[:MAX_LOGGED_CHARS],
        "upstream_ms": None if upstream_s is None else round(upstream_s * 1000, 3),
    }
    if aborted:
        event["aborted"] = True
    if client_cert_subject is not None:  # the verified client certificate of a TLS connection
        event["client_cert_subject"] = client_cert_subject[:MAX_LOGGED_CHARS]
    return event
