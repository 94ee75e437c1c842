"""HTTP/1.1 wire details shared by both legs of the proxy: hop-by-hop fields, framing, status lines.

Pure functions and constants; nothing here does I/O.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

# RFC 9110 §7.6.1 hop-by-hop fields, plus the framing fields the proxy always sets itself.
HOP_BY_HOP: Final = frozenset(
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
REQUEST_REPLACED: Final = frozenset(
    {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"expect", b"x-forwarded-client-cert"}
)

IDEMPOTENT_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

CRLF: Final = b"\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

_REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}
_STATUS_LINES: Final[dict[int, bytes]] = {}
_TOKEN: Final = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_REASON_OK: Final = re.compile(rb"[\t \x21-\x7e\x80-\xff]*")


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


_LOWER: Final[dict[bytes, bytes]] = {}  # field names seen, lower-cased
_LOWER_MAX: Final = 512
_LOWER_NAME_MAX: Final = 64  # longer names are rare and lowered each time: the cache stays small


def lower_name(name: bytes) -> bytes:
    """``name.lower()``, remembered: the same few dozen field names arrive on every message."""
    lower = _LOWER.get(name)
    if lower is None:
        lower = name.lower()
        if len(name) <= _LOWER_NAME_MAX:
            if len(_LOWER) >= _LOWER_MAX:
                _LOWER.clear()
            _LOWER[name] = lower
    return lower


def strip_value(value: bytes) -> bytes:
    """A field value without trailing whitespace (llhttp drops the leading one only)."""
    if value and value[-1] in (0x20, 0x09):
        return value.rstrip(b" \t")
    return value
