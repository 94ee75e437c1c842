"""Upstream error bodies made consistent (``proxy.error_bodies = "augment"``).

A 4xx/5xx JSON object from the app keeps its fields and gains ``error_id``, ``request_id``,
``timestamp``, and ``error_code`` / ``message`` when missing, so a FastAPI ``{"detail": ...}``
becomes ``{"detail": ..., "error_code": "NOT_FOUND", ...}``. Anything else returns None and the
caller decides (a non-JSON 5xx body is replaced; a non-JSON 4xx is never held).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from agent.rules.clock import rfc3339
from agent.rules.errors import code_for_status

Headers = list[tuple[bytes, bytes, bytes]]  # (name, value, lower-case name)


def is_json(headers: Headers) -> bool:
    for _, value, lower in headers:
        if lower == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


def _message_from(detail: Any) -> str | None:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict) and isinstance(detail[0].get("msg"), str):
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
        return f"{where}: {first['msg']}" if where else first["msg"]
    return None


def augment_error_body(status: int, headers: Headers, body: bytes, *, error_id: str, request_id: str) -> bytes | None:
    """The augmented JSON body, or None when ``body`` is not a JSON object (or is encoded)."""
    if not is_json(headers) or any(lower == b"content-encoding" and v.strip().lower() != b"identity" for _, v, lower in headers):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    data.setdefault("error_code", code_for_status(status))
    if "message" not in data:
        data["message"] = _message_from(data.get("detail")) or (
            "Request failed." if status < 500 else "The upstream service failed."
        )
    data["error_id"] = error_id
    data["request_id"] = request_id
    data.setdefault("timestamp", rfc3339(time.time()))
    return orjson.dumps(data)
