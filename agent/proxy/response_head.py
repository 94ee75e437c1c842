"""Response heads: the app's response made the agent's, and the heads of the agent's own answers.

Pure: bytes in, bytes out. Every head carries the request id, the security headers
(``agent.rules.security_headers``), CORS lines when the origin is allowed, and
``Connection: close`` when the connection ends after it.
"""

from __future__ import annotations

from typing import Final

from agent.proxy.request_head import Headers, RequestHead
from agent.proxy.settings import DROP, HOP, WATCH, ProxySettings
from agent.proxy.wire import connection_tokens, status_line
from agent.rules.errors import error_json

ACAO: Final = b"access-control-allow-origin"


class Framing:
    """How a proxied body is sent on: ``chunked`` re-framed, or ``close``-delimited (HTTP/1.0)."""

    __slots__ = ("chunked", "close", "line")

    def __init__(self, line: bytes, *, chunked: bool = False, close: bool = False) -> None:
        self.line = line
        self.chunked = chunked
        self.close = close


_CHUNKED: Final = Framing(b"Transfer-Encoding: chunked\r\n", chunked=True)
_NONE: Final = Framing(b"")
_UNTIL_CLOSE: Final = Framing(b"", close=True)  # an HTTP/1.0 client: the body ends when the connection closes (RFC 9112 §6.1)


def framing(status: int, request: RequestHead, content_length: bytes | None, chunked: bool) -> Framing:
    """How the app's body is framed for this client."""
    if request.is_head or status in (204, 304) or status < 200:
        return Framing(b"Content-Length: %s\r\n" % content_length) if content_length is not None else _NONE
    if chunked:
        return _CHUNKED if request.http11 else _UNTIL_CLOSE
    if content_length is not None:
        return Framing(b"Content-Length: %s\r\n" % content_length)
    return _CHUNKED if request.http11 else _UNTIL_CLOSE  # a close-delimited upstream body, re-framed


def proxied_head(
    settings: ProxySettings, status: int, headers: Headers, request: RequestHead, *, error_id: str | None, keep_alive: bool
) -> tuple[bytes, Framing]:
    """The head sent to the client for the app's response, and how its body is framed.

    Hop-by-hop fields (and those named in ``Connection``, RFC 9110 §7.6.1), fingerprints and the
    app's own ``X-Request-ID``/``X-Error-ID`` are dropped before the agent adds its own.
    """
    actions = settings.response_fields[1 if request.https else 0]
    present: set[bytes] = set()
    lines: list[bytes] = []
    lowers: list[bytes] = []
    content_length = None
    chunked = False
    connection: list[bytes] | None = None
    for name, value, lower in headers:
        action = actions.get(lower, 0)
        if action == HOP:
            if lower == b"content-length":
                content_length = value
            elif lower == b"transfer-encoding":
                chunked = True
            elif lower == b"connection":
                connection = [value] if connection is None else [*connection, value]
            continue
        if action == DROP:
            continue
        if action == WATCH:
            present.add(lower)
        lines.append(b"%s: %s\r\n" % (name, value))
        lowers.append(lower)
    if connection is not None and connection != [b"keep-alive"]:  # the common value names no field
        named = connection_tokens(connection)
        if named & set(lowers):
            lines = [line for line, lower in zip(lines, lowers, strict=True) if lower not in named]
            present -= named
    body_framing = framing(status, request, content_length, chunked)
    cors = request.cors if ACAO not in present else b""  # the app answered CORS itself
    if error_id is not None:
        lines.append(b"X-Error-ID: %s\r\n" % error_id.encode())
    head = b"%s%s%s%s: %s\r\n%s%s%s\r\n" % (
        status_line(status),
        b"".join(lines),
        body_framing.line,
        settings.request_id_name,
        request.ids.request_id.encode(),
        _security_lines(settings, present, request.https),
        cors,
        b"" if keep_alive and not body_framing.close else b"Connection: close\r\n",
    )
    return head, body_framing


def switching_head(settings: ProxySettings, headers: Headers, request: RequestHead) -> bytes:
    """The app's 101 as the client gets it: the usual rules, with its ``Connection``/``Upgrade`` kept."""
    upgrade = b", ".join(value for _, value, lower in headers if lower == b"upgrade") or request.upgrade or b""
    head, _ = proxied_head(settings, 101, headers, request, error_id=None, keep_alive=True)
    return head[:-2] + b"Connection: Upgrade\r\nUpgrade: %s\r\n\r\n" % upgrade


def _security_lines(settings: ProxySettings, present: set[bytes], https: bool) -> bytes:
    present.discard(ACAO)
    names = {name.decode("latin-1") for name in present} if present else set()
    return settings.security.encoded(names, https)


def local_head(
    settings: ProxySettings,
    status: int,
    *,
    request_id: str,
    https: bool,
    close: bool,
    content_type: bytes | None = b"application/json",
    content_length: int = 0,
    extra: bytes = b"",
) -> bytes:
    """The head of an answer the agent makes itself (health, metrics, preflight, errors).

    Made once per kind of answer (status, type, length, extra lines, scheme, close) and kept in
    ``settings.local_heads`` (bounded): a probe only adds its request id.
    """
    key = (status, content_type, content_length, extra, https, close)
    cache = settings.local_heads
    parts = cache.get(key)
    if parts is None:
        parts = _local_head_parts(settings, status, https, close, content_type, content_length, extra)
        if len(cache) >= LOCAL_HEADS_MAX:
            cache.clear()
        cache[key] = parts
    return parts[0] + request_id.encode() + parts[1]


LOCAL_HEADS_MAX: Final = 256


def _local_head_parts(
    settings: ProxySettings, status: int, https: bool, close: bool, content_type: bytes | None, content_length: int, extra: bytes
) -> tuple[bytes, bytes]:
    """What comes before the request id, and after it."""
    before = b"%s%s%sCache-Control: no-store\r\n%s: " % (
        status_line(status),
        b"Content-Type: %s\r\n" % content_type if content_type is not None else b"",
        b"Content-Length: %d\r\n" % content_length if content_type is not None else b"",
        settings.request_id_name,
    )
    after = b"\r\n%s%s%s\r\n" % (extra, settings.security.encoded(set(), https), b"Connection: close\r\n" if close else b"")
    return before, after


def error_answer(
    settings: ProxySettings,
    status: int,
    code: str,
    *,
    request_id: str,
    https: bool,
    close: bool,
    extra: bytes = b"",
    message: str | None = None,
) -> tuple[bytes, bytes, str]:
    """(head, body, error_id) of the agent's JSON error (SPEC §5)."""
    error_id, body = error_json(code, request_id=request_id, message=message)
    # Not through local_head's cache: every error has its own id.
    before, after = _local_head_parts(
        settings, status, https, close, b"application/json", len(body), b"X-Error-ID: %s\r\n%s" % (error_id.encode(), extra)
    )
    head = before + request_id.encode() + after
    return head, body, error_id
