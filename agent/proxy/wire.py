"""HTTP/1.1 wire details shared by both legs of the proxy: hop-by-hop fields, framing, status lines.

Pure functions and constants; nothing here does I/O.
"""

from __future__ import annotations

import re
from http import HTTPStatus

# RFC 9110 §7.6.1 hop-by-hop fields, plus the framing fields the proxy always sets itself.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"trailer",
        b"content-length",
    }
)
# Request fields the proxy replaces with its own values.
REQUEST_REPLACED = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"expect", b"x-forwarded-client-cert"}
)

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REASON_OK = re.compile(rb"[\t \x21-\x7e\x80-\xff]*")


def status_line(status: int, reason: bytes = b"") -> bytes:
    """``HTTP/1.1 200 OK\\r\\n``; the standard phrase unless the upstream gave a clean one."""
    if reason and reason != _REASONS.get(status) and _REASON_OK.fullmatch(reason) and len(reason) < 128:
        return b"HTTP/1.1 %d %s\r\n" % (status, reason)
    line = _STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


def connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    """Field names listed in ``Connection`` (they are hop-by-hop too), lower-cased."""
    return frozenset(token.strip().lower() for value in values for token in value.split(b",") if token.strip())


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def is_token(value: bytes) -> bool:
    return _TOKEN.fullmatch(value) is not None
