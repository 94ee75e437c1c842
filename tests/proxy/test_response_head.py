"""agent.proxy.response_head, without a socket: framing, dropped fields, security headers, CORS."""

from __future__ import annotations

from typing import Any

from agent.config import build_config
from agent.proxy.request_head import parse_request_head
from agent.proxy.response_head import error_answer, local_head, proxied_head
from agent.proxy.settings import proxy_settings


def settings(**table: Any):  # type: ignore[no-untyped-def]
    return proxy_settings(build_config(table, {}, "test"))


def request(s, method=b"GET", version="1.1", origin=None, https=False):  # type: ignore[no-untyped-def]
    hs = [(b"Host", b"a", b"host")]
    if origin:
        hs.append((b"Origin", origin, b"origin"))
    if https:
        hs.append((b"X-Forwarded-Proto", b"https", b"x-forwarded-proto"))
    return parse_request_head(
        s, method=method, target=b"/", version=version, headers=hs, upgrade=False, keep_alive=True, trusted=https
    )


def h(*pairs: tuple[bytes, bytes]) -> list[tuple[bytes, bytes, bytes]]:
    return [(n, v, n.lower()) for n, v in pairs]


def lines(head: bytes) -> list[bytes]:
    return head.split(b"\r\n")


def count(head: bytes, name: bytes) -> int:
    return sum(1 for line in lines(head) if line.lower().startswith(name.lower() + b":"))


def test_framing() -> None:
    s = settings()
    head, framing = proxied_head(s, 200, h((b"Content-Length", b"5")), request(s), error_id=None, keep_alive=True)
    assert b"Content-Length: 5\r\n" in head and not framing.chunked and b"Connection: close" not in head
    head, framing = proxied_head(s, 200, h((b"Transfer-Encoding", b"chunked")), request(s), error_id=None, keep_alive=True)
    assert framing.chunked and count(head, b"Transfer-Encoding") == 1
    head, framing = proxied_head(
        s, 200, h((b"Transfer-Encoding", b"chunked")), request(s, version="1.0"), error_id=None, keep_alive=True
    )
    assert framing.close and b"Connection: close\r\n" in head and b"Transfer-Encoding" not in head
    head, framing = proxied_head(s, 200, h(), request(s), error_id=None, keep_alive=True)
    assert framing.chunked  # close-delimited upstream body, re-framed
    head, framing = proxied_head(s, 204, h(), request(s), error_id=None, keep_alive=True)
    assert not framing.chunked and b"Content-Length" not in head
    head, _ = proxied_head(s, 200, h((b"Content-Length", b"9")), request(s, method=b"HEAD"), error_id=None, keep_alive=False)
    assert b"Content-Length: 9\r\n" in head and b"Connection: close\r\n" in head


def test_dropped_fields_and_connection_named() -> None:
    s = settings()
    app = h(
        (b"Server", b"x"),
        (b"X-Request-ID", b"app-id"),
        (b"X-Error-ID", b"app-error"),
        (b"Connection", b"X-Hop"),
        (b"X-Hop", b"1"),
        (b"X-App", b"kept"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    )
    head, _ = proxied_head(s, 200, app, request(s), error_id=None, keep_alive=True)
    assert b"Server" not in head and b"app-id" not in head and b"app-error" not in head and b"X-Hop" not in head
    assert b"X-App: kept\r\n" in head and count(head, b"Set-Cookie") == 2 and count(head, b"X-Request-ID") == 1


def test_security_headers_keep_or_override_with_one_value_each() -> None:
    app = h((b"X-Frame-Options", b"SAMEORIGIN"), (b"Strict-Transport-Security", b"max-age=5"))
    default = settings()
    head, _ = proxied_head(default, 200, app, request(default, https=True), error_id=None, keep_alive=True)
    assert b"X-Frame-Options: SAMEORIGIN\r\n" in head and count(head, b"X-Frame-Options") == 1
    assert b"Strict-Transport-Security: max-age=5\r\n" in head and count(head, b"Strict-Transport-Security") == 1
    override = settings(security_headers={"override": True})
    head, _ = proxied_head(override, 200, app, request(override, https=True), error_id=None, keep_alive=True)
    assert b"X-Frame-Options: DENY\r\n" in head and count(head, b"X-Frame-Options") == 1
    assert count(head, b"Strict-Transport-Security") == 1 and b"max-age=5" not in head


def test_cors_lines_once_unless_the_app_set_its_own() -> None:
    s = settings(cors={"allowed_origins": ["https://a.example"], "allow_credentials": True})
    req = request(s, origin=b"https://a.example")
    head, _ = proxied_head(s, 200, h(), req, error_id=None, keep_alive=True)
    assert count(head, b"Access-Control-Allow-Origin") == 1 and count(head, b"Access-Control-Allow-Credentials") == 1
    own = h((b"Access-Control-Allow-Origin", b"https://a.example"))
    head, _ = proxied_head(s, 200, own, req, error_id=None, keep_alive=True)
    assert count(head, b"Access-Control-Allow-Origin") == 1 and count(head, b"Access-Control-Allow-Credentials") == 0


def test_local_and_error_heads() -> None:
    s = settings()
    head = local_head(s, 200, request_id="r1", https=False, close=True, content_length=3)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 3\r\n" in head and b"Connection: close\r\n" in head
    assert b"X-Request-ID: r1\r\n" in head and b"Cache-Control: no-store\r\n" in head and head.endswith(b"\r\n\r\n")
    head, body, error_id = error_answer(s, 431, "HEADER_TOO_LARGE", request_id="r2", https=False, close=True)
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"X-Error-ID: %s\r\n" % error_id.encode() in head and b"Content-Length: %d\r\n" % len(body) in head
    assert b'"error_code":"HEADER_TOO_LARGE"' in body
