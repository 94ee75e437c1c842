"""agent.rules.security_headers: what is dropped and added, override, HSTS, the pre-encoded block."""

from __future__ import annotations

from agent.config import DEFAULT_SECURITY_HEADERS
from agent.rules.security_headers import SecurityHeaders, encode

REMOVE = ("Server", "X-Powered-By")


def rule(*, override: bool = False, hsts: str = "https") -> SecurityHeaders:
    return SecurityHeaders(DEFAULT_SECURITY_HEADERS, remove=REMOVE, override=override, hsts=hsts, hsts_value="max-age=1")


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in headers if n.lower() == name.lower()]


def test_default_keeps_the_app_value_and_adds_the_rest() -> None:
    out = rule().apply([("X-Frame-Options", "SAMEORIGIN"), ("Content-Type", "text/plain")], https=False)
    assert values(out, "X-Frame-Options") == ["SAMEORIGIN"]
    assert values(out, "X-Content-Type-Options") == ["nosniff"]
    assert values(out, "Content-Type") == ["text/plain"]
    assert values(out, "Strict-Transport-Security") == []


def test_override_replaces_the_app_value_with_exactly_one() -> None:
    out = rule(override=True).apply([("x-frame-options", "SAMEORIGIN"), ("X-Frame-Options", "ALLOW")], https=False)
    assert values(out, "X-Frame-Options") == ["DENY"]
    for name, value in DEFAULT_SECURITY_HEADERS:
        assert values(out, name) == [value]


def test_fingerprints_are_removed_case_insensitively() -> None:
    out = rule().apply([("server", "nginx"), ("X-POWERED-BY", "php"), ("X-Kept", "1")], https=False)
    assert values(out, "Server") == [] and values(out, "X-Powered-By") == [] and values(out, "X-Kept") == ["1"]


def test_hsts_only_for_https_unless_always_and_never_twice() -> None:
    assert values(rule().apply([], https=True), "Strict-Transport-Security") == ["max-age=1"]
    assert values(rule().apply([], https=False), "Strict-Transport-Security") == []
    assert values(rule(hsts="always").apply([], https=False), "Strict-Transport-Security") == ["max-age=1"]
    assert values(rule(hsts="off").apply([], https=True), "Strict-Transport-Security") == []
    app_hsts = [("Strict-Transport-Security", "max-age=5")]
    assert values(rule().apply(app_hsts, https=True), "Strict-Transport-Security") == ["max-age=5"]
    assert values(rule(override=True).apply(app_hsts, https=True), "Strict-Transport-Security") == ["max-age=1"]
    # Over plain HTTP with hsts = "https" the agent adds none, so the app's own value stays.
    assert values(rule(override=True).apply(app_hsts, https=False), "Strict-Transport-Security") == ["max-age=5"]


def test_encoded_block_matches_added() -> None:
    for override in (False, True):
        for https in (False, True):
            r = rule(override=override)
            assert r.encoded(set(), https) == encode(r.added(frozenset(), https))
            present = {"x-frame-options"}
            assert r.encoded(present, https) == encode(r.added(frozenset(present), https))
    assert b"X-Frame-Options" not in rule().encoded({"x-frame-options"}, False)


def test_a_header_configured_empty_is_not_sent() -> None:
    headers = [(n, v) for n, v in DEFAULT_SECURITY_HEADERS if n != "X-Frame-Options"]
    r = SecurityHeaders(headers, remove=(), override=False, hsts="off", hsts_value="")
    assert values(r.apply([], https=False), "X-Frame-Options") == []
