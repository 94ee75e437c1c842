"""agent.proxy.request_head, without a socket: validation, ids, routing, CORS, the upstream head."""

from __future__ import annotations

from typing import Any

import pytest

from agent.config import build_config
from agent.proxy.request_head import Reject, parse_request_head, upstream_request_head
from agent.proxy.settings import HEALTH, PREFLIGHT, proxy_settings

TP = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def settings(**table: Any):  # type: ignore[no-untyped-def]
    return proxy_settings(build_config(table, {}, "test"))


def headers(*pairs: tuple[bytes, bytes]) -> list[tuple[bytes, bytes, bytes]]:
    return [(n, v, n.lower()) for n, v in pairs]


def parse(s, method=b"GET", target=b"/x", version="1.1", hs=((b"Host", b"a.test"),), upgrade=False, trusted=False):  # type: ignore[no-untyped-def]
    return parse_request_head(
        s, method=method, target=target, version=version, headers=headers(*hs), upgrade=upgrade, keep_alive=True, trusted=trusted
    )


def test_ids_kept_or_made() -> None:
    s = settings()
    head = parse(s, hs=((b"Host", b"a"), (b"X-Request-ID", b"abc"), (b"traceparent", TP), (b"tracestate", b"v=1")))
    assert head.ids.request_id == "abc" and head.ids.traceparent == TP.decode() and head.ids.tracestate == b"v=1"
    head = parse(s, hs=((b"Host", b"a"), (b"X-Request-ID", b"bad id"), (b"traceparent", b"junk"), (b"tracestate", b"v=1")))
    assert head.ids.request_id != "bad id" and head.ids.tracestate is None


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"version": "2.0"}, 400),
        ({"method": b"CONNECT", "target": b"a:443"}, 405),
        ({"target": b"http://a/x"}, 400),
        ({"hs": ()}, 400),
        ({"hs": ((b"Host", b"a"), (b"Host", b"b"))}, 400),
        ({"hs": ((b"Host", b"a b"),)}, 400),
        ({"hs": ((b"Host", b"a"), (b"Transfer-Encoding", b"gzip, chunked"))}, 400),
        ({"hs": ((b"Host", b"a"), (b"Transfer-Encoding", b"chunked")), "version": "1.0"}, 400),
        ({"hs": ((b"Host", b"a"), (b"Content-Length", b"5")), "upgrade": True}, 400),
        ({"hs": ((b"Host", b"a"), (b"Content-Length", b"99999999999"))}, 413),
    ],
)
def test_refusals_carry_status_and_the_resolved_ids(kwargs: dict[str, Any], status: int) -> None:
    s = settings()
    hs = kwargs.pop("hs", ((b"Host", b"a"),))
    with pytest.raises(Reject) as info:
        parse(s, hs=(*hs, (b"X-Request-ID", b"kept-id")), **kwargs)
    assert info.value.status == status
    if kwargs.get("version") != "2.0":  # the version is checked before headers are read
        assert info.value.ids is not None and info.value.ids.request_id == "kept-id"


def test_http10_without_host_and_asterisk_options_are_fine() -> None:
    s = settings()
    assert not parse(s, version="1.0", hs=()).http11
    assert parse(s, method=b"OPTIONS", target=b"*").path == b"*"


def test_local_paths_and_preflight() -> None:
    s = settings(cors={"allowed_origins": ["https://a.example"], "allow_credentials": True})
    assert parse(s, target=b"/health?x=1").local == HEALTH
    assert parse(s, target=b"/healthz").local is None
    pre = parse(
        s,
        method=b"OPTIONS",
        hs=((b"Host", b"a"), (b"Origin", b"https://a.example"), (b"Access-Control-Request-Method", b"PUT")),
    )
    assert pre.local == PREFLIGHT
    assert pre.cors.count(b"Access-Control-Allow-Credentials") == 1
    assert parse(s, hs=((b"Host", b"a"), (b"Origin", b"https://evil.example"))).cors == b""


def test_https_only_from_a_trusted_proxy() -> None:
    s = settings(proxy={"trusted_proxies": ["10.0.0.0/8"]})
    hs = ((b"Host", b"a"), (b"X-Forwarded-Proto", b"https"))
    assert parse(s, hs=hs, trusted=True).https and not parse(s, hs=hs, trusted=False).https


def test_upstream_head_drops_hop_by_hop_before_adding_the_agents_fields() -> None:
    s = settings()
    head = parse(
        s,
        method=b"POST",
        hs=(
            (b"Host", b"a.test"),
            (b"Connection", b"keep-alive, X-Request-ID, X-Secret"),
            (b"X-Secret", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"X-Forwarded-For", b"6.6.6.6"),
            (b"Content-Length", b"3"),
            (b"X-App", b"kept"),
        ),
    )
    raw = upstream_request_head(head, s, peer="127.0.0.1", trusted=False, authority=b"up:8080")
    lines = raw.split(b"\r\n")
    assert lines[0] == b"POST /x HTTP/1.1" and lines[1] == b"Host: a.test"
    text = raw.decode()
    assert "X-Secret" not in text and "Keep-Alive" not in text and "Connection" not in text
    assert "X-App: kept" in text and "X-Forwarded-For: 127.0.0.1\r\n" in text
    assert f"X-Request-ID: {head.ids.request_id}" in text and "traceparent: 00-" in text
    assert raw.endswith(b"Content-Length: 3\r\n\r\n")


def test_upstream_head_appends_forwarded_for_from_a_trusted_proxy() -> None:
    s = settings(proxy={"trusted_proxies": ["127.0.0.1/32"]})
    head = parse(
        s, hs=((b"Host", b"a"), (b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-Host", b"public.example")), trusted=True
    )
    text = upstream_request_head(head, s, peer="127.0.0.1", trusted=True, authority=b"up").decode()
    assert "X-Forwarded-For: 1.1.1.1, 127.0.0.1" in text and "X-Forwarded-Host: public.example" in text
