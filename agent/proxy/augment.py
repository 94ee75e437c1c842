"""Upstream error bodies made consistent (``proxy.error_bodies = "augment"``).

A 4xx/5xx JSON object from the app keeps its fields and gains ``error_id``, ``request_id``,
``timestamp``, and ``error_code`` / ``message`` when missing, so a FastAPI ``{"detail": ...}``
becomes ``{"detail": ..., "error_code": "NOT_FOUND", ...}``. Anything else returns None and the
caller decides (a non-JSON 5xx body is replaced; a non-JSON 4xx is never held).
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from agent.rules.clock import rfc3339
from agent.rules.errors import UPSTREAM_ERROR, code_for_status, error_json

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


MAX_HELD_BYTES: Final = 64 * 1024


class HeldError:
    """An app's 4xx/5xx response held back until its body is complete, to be made consistent.

    A JSON body is held (up to ``MAX_HELD_BYTES``, then given up and streamed as it is); a
    non-JSON 5xx body (an HTML traceback page, say) is discarded as it arrives, whatever its size,
    and replaced by the agent's ``UPSTREAM_ERROR``.
    """

    __slots__ = ("chunks", "discarding", "headers", "size", "status")

    def __init__(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        self.discarding = not is_json(headers)
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> bool:
        """Keep a piece of the body; False once it is too big to rewrite."""
        if self.discarding:
            return True
        self.chunks.append(data)
        self.size += len(data)
        return self.size <= MAX_HELD_BYTES

    def body(self) -> bytes:
        return b"".join(self.chunks)

    def rewritten(self, *, error_id: str, request_id: str) -> tuple[Headers, bytes, bool]:
        """(headers, body, was the body replaced) once the app's body is complete."""
        body = self.body()
        new_body = (
            None
            if self.discarding
            else augment_error_body(self.status, self.headers, body, error_id=error_id, request_id=request_id)
        )
        if new_body is None and self.status < 500:  # a 4xx we cannot read (encoded): passed on as it is
            return _with_length(self.headers, body, keep_type=True), body, False
        replaced = new_body is None
        if new_body is None:
            _, new_body = error_json(UPSTREAM_ERROR.code, request_id=request_id, error_id=error_id)
        return _with_length(self.headers, new_body, keep_type=False), new_body, replaced


_REPLACED_BY_JSON: Final[tuple[bytes, ...]] = (b"content-type", b"content-length", b"transfer-encoding", b"content-encoding")


def _with_length(headers: Headers, body: bytes, *, keep_type: bool) -> Headers:
    """The app's headers for a rewritten body: framed by length (and JSON unless ``keep_type``)."""
    replaced = (b"transfer-encoding", b"content-length") if keep_type else _REPLACED_BY_JSON
    kept = [h for h in headers if h[2] not in replaced]
    if not keep_type:
        kept.append((b"Content-Type", b"application/json", b"content-type"))
    kept.append((b"Content-Length", b"%d" % len(body), b"content-length"))
    return kept
