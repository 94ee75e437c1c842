"""agent.rules.ids: request ids, traceparent and new ids, bytes and text alike."""

from __future__ import annotations

import re

import pytest

from agent.rules.ids import (
    DEFAULT_PATTERN,
    RequestIdRule,
    new_ids,
    parse_traceparent,
    parse_traceparent_text,
    resolve_ids,
    resolve_ids_text,
)

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
VALID_TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
DEFAULT = RequestIdRule("X-Request-ID", DEFAULT_PATTERN)


@pytest.mark.parametrize("value", ["abc", "a" * 128, "req-1.2:3+4=5/6@7_8", "0"])
def test_default_pattern_keeps_valid_ids(value: str) -> None:
    assert DEFAULT.accepts(value.encode()) and DEFAULT.accepts_text(value)


@pytest.mark.parametrize("value", ["", "a" * 129, "a b", "a\r\nb", "é", "a,b", "<script>"])
def test_default_pattern_replaces_invalid_ids(value: str) -> None:
    assert not DEFAULT.accepts(value.encode("utf-8")) and not DEFAULT.accepts_text(value)


def test_custom_digit_pattern_means_ascii_digits_on_bytes_and_text() -> None:
    rule = RequestIdRule("X-Request-ID", r"\d+")
    assert rule.accepts(b"123") and rule.accepts_text("123")
    arabic = "١٢٣"  # Arabic-Indic digits: \d in a str regex, never in a request id
    assert not rule.accepts_text(arabic)
    assert not rule.accepts(arabic.encode("utf-8"))
    assert not rule.accepts(arabic.encode("utf-8").decode("latin-1").encode("latin-1"))


def test_a_pattern_that_allows_control_characters_still_refuses_them() -> None:
    rule = RequestIdRule("X-Request-ID", r".+")
    assert rule.accepts(b"anything goes")
    assert not rule.accepts(b"a\x01b") and not rule.accepts(b"a\x7f") and not rule.accepts(b"\xff")
    assert not rule.accepts_text("tab\there")


def test_header_name_is_kept_and_lowered() -> None:
    rule = RequestIdRule("X-Correlation-ID", DEFAULT_PATTERN)
    assert rule.header == "X-Correlation-ID" and rule.header_lower == "x-correlation-id"


def test_traceparent_valid_and_invalid() -> None:
    assert parse_traceparent(VALID_TP.encode()) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert parse_traceparent_text(VALID_TP) == "4bf92f3577b34da6a3ce929d0e0e4736"
    future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
    assert parse_traceparent(future.encode()) == "4bf92f3577b34da6a3ce929d0e0e4736"
    for bad in (
        VALID_TP.upper(),
        "ff" + VALID_TP[2:],
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",
        VALID_TP + "-extra",  # version 00 has exactly four fields
        VALID_TP[:-1],
        "",
    ):
        assert parse_traceparent(bad.encode()) is None, bad
        assert parse_traceparent_text(bad) is None, bad
    assert parse_traceparent(None) is None and parse_traceparent_text(None) is None
    assert parse_traceparent_text(VALID_TP.replace("a", "ä", 1)) is None


def test_new_ids_are_uuid4_and_unsampled_traceparents() -> None:
    seen = set()
    for _ in range(500):
        request_id, traceparent, trace_id = new_ids()
        assert UUID4.match(request_id)
        assert parse_traceparent(traceparent.encode()) == trace_id and traceparent.endswith("-00")
        seen.add(request_id)
    assert len(seen) == 500


def test_resolve_keeps_valid_values_and_drops_tracestate_without_its_traceparent() -> None:
    ids = resolve_ids(DEFAULT, b"abc", VALID_TP.encode(), b"vendor=1")
    assert ids.fields()[:4] == ("abc", VALID_TP, "4bf92f3577b34da6a3ce929d0e0e4736", b"vendor=1")
    assert (ids.parent_id, ids.flags) == ("00f067aa0ba902b7", "01") and len(ids.span_id) == 16 and ids.span_id != ids.parent_id
    ids = resolve_ids(DEFAULT, b"bad id", b"garbage", b"vendor=1")
    assert UUID4.match(ids.request_id) and ids.tracestate is None
    assert parse_traceparent(ids.traceparent.encode()) == ids.trace_id


def test_a_new_trace_names_the_agents_own_span_as_the_apps_parent() -> None:
    """Without a valid incoming traceparent, the one sent on is the agent's span, unsampled (the
    proxy relies on it: an unsampled new trace needs no second traceparent)."""
    for incoming in (None, b"garbage"):
        ids = resolve_ids(DEFAULT, None, incoming, None)
        assert ids.traceparent == f"00-{ids.trace_id}-{ids.span_id}-00" and ids.parent_id is None and ids.flags is None


@pytest.mark.parametrize(
    ("request_id", "traceparent"),
    [("abc", VALID_TP), ("١٢٣", VALID_TP), (None, None), ("x" * 200, "00-zz"), ("ok", VALID_TP.replace("a", "ä", 1))],
)
def test_text_and_bytes_resolution_agree(request_id: str | None, traceparent: str | None) -> None:
    rule = RequestIdRule("X-Request-ID", r"^[\w]{1,8}$")
    text = resolve_ids_text(rule, request_id, traceparent, "s=1")
    raw = resolve_ids(
        rule,
        None if request_id is None else request_id.encode("utf-8"),
        None if traceparent is None else traceparent.encode("utf-8"),
        b"s=1",
    )
    kept_text = text.request_id == request_id
    kept_raw = raw.request_id == request_id
    assert kept_text == kept_raw
    assert (text.trace_id == raw.trace_id) == (parse_traceparent_text(traceparent) is not None)
