"""Fuzzing request ids and trace context against oracles written from the specs, not the code.

* Request id: an incoming ``X-Request-ID`` is kept exactly when it matches the default
  ``request_id.pattern`` (1-128 of ``A-Z a-z 0-9 . _ : + = / @ -``); anything else (CR/LF, too
  long, non-ASCII, empty, CTLs) is replaced by a fresh UUID4 and never echoed. Checked on both
  implementations: ``agent.rules.ids`` as the admin listener applies it to decoded header values
  (``RequestIdRule.accepts_text`` / ``resolve_ids_text``) and the main listener itself, driven
  byte for byte through ``ClientConnection.data_received`` (a request the parser refuses must
  get a generated id too).
* ``parse_traceparent`` accepts exactly the W3C Trace Context Level 1 values (§3.2, version
  handling of §3.2.4), with the agent's documented 512-character cap (in bytes on the wire);
  ``parse_traceparent_text`` the same, except that a non-ASCII value is never trace context.

Fixed seed (``derandomize=True``).
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.app import create_monitor
from agent.config import RequestIdConfig, build_config
from agent.proxy.context import ProxyContext
from agent.proxy.listener import ClientConnection
from agent.proxy.main import create_main_listener
from agent.rules.ids import RequestIdRule, new_ids, parse_traceparent, parse_traceparent_text, resolve_ids_text
from tests.corpus.harness import FakeTransport
from tests.support.responses import UUID4, parse_responses

FUZZ = settings(derandomize=True, database=None, max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Hypothesis' failure explanation imports mypy_extensions, whose DeprecationWarning the project's
# filterwarnings=error turns into an INTERNALERROR that hides the falsifying example.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
DEFAULT_RULE = RequestIdRule(RequestIdConfig().header, RequestIdConfig().pattern)


# --------------------------------------------------------------------------- oracles
ID_CHARS = frozenset(string.ascii_letters + string.digits + "._:+=/@-")


def id_is_kept(value: str) -> bool:
    """The documented rule for the default pattern, written without a regular expression."""
    return 1 <= len(value) <= 128 and all(c in ID_CHARS for c in value)


HEX_LC = frozenset("0123456789abcdef")
MAX_TRACEPARENT = 512  # the agent ignores longer values (an implementation limit, not W3C)


def w3c_trace_id(value: str | None) -> str | None:
    """W3C Trace Context Level 1: the trace id of a valid traceparent, else None.

    version "-" trace-id "-" parent-id "-" flags, all lower-case hex; version ff is invalid,
    all-zero ids are invalid; version 00 is exactly 55 characters; a higher version is parsed by
    its first 55 characters and must then end or continue with "-" (§3.2.4).
    """
    if value is None or len(value) < 55 or len(value) > MAX_TRACEPARENT:
        return None

    def hexlc(part: str) -> bool:
        return all(c in HEX_LC for c in part)

    version, trace_id, parent_id, flags = value[0:2], value[3:35], value[36:52], value[53:55]
    if not (hexlc(version) and hexlc(trace_id) and hexlc(parent_id) and hexlc(flags)):
        return None
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    if version == "ff" or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return None
    if version == "00":
        return trace_id if len(value) == 55 else None
    return trace_id if len(value) == 55 or value[55] == "-" else None


# --------------------------------------------------------------------------- request id: the rule on text (admin)
allowed_id = st.text(alphabet="".join(sorted(ID_CHARS)), min_size=1, max_size=140)
hostile_id = st.one_of(
    st.text(max_size=150),
    st.builds(
        lambda a, c, b: a + c + b,
        allowed_id,
        st.sampled_from(["\r", "\n", "\r\n", "\x00", " ", "\t", "é", "\u2028", "%", "#", ","]),
        allowed_id,
    ),
    st.sampled_from(["", "a" * 128, "a" * 129, "x" * 8192, "abc\r\nSet-Cookie: a=b", "ok\n", "\nok", "ID-é", "１２３", "٣"]),
)


@FUZZ
@given(value=allowed_id | hostile_id)
@example(value="ok\n")  # "$" before a trailing newline: fullmatch must still refuse it
def test_resolve_request_id_keeps_exactly_the_valid_ones(value: str) -> None:
    resolved = resolve_ids_text(DEFAULT_RULE, value, None, None).request_id
    assert DEFAULT_RULE.accepts_text(value) == id_is_kept(value), value
    if id_is_kept(value):
        assert resolved == value
    else:
        assert UUID4.match(resolved), (value, resolved)
        assert resolved != value


def test_resolve_request_id_without_a_header_generates_one() -> None:
    assert UUID4.match(resolve_ids_text(DEFAULT_RULE, None, None, None).request_id)


# --------------------------------------------------------------------------- request id: the main listener
@dataclass
class Listener:
    ctx: ProxyContext
    loop: asyncio.AbstractEventLoop  # the listener runs inside a loop (closing schedules a timer)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    config = build_config(
        {"admin": {"enabled": False}, "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}}}, {}, "fuzz"
    )
    loop = asyncio.new_event_loop()
    try:
        yield Listener(create_main_listener(config, create_monitor(config)).ctx, loop)
    finally:
        loop.close()


def answer(listener: Listener, raw_value: bytes) -> tuple[int, str]:
    """(status, X-Request-ID) of the agent's own answer to a request carrying ``raw_value``."""

    async def exchange() -> bytes:
        conn = ClientConnection(listener.ctx)
        transport = FakeTransport()
        conn.connection_made(transport)
        try:
            conn.data_received(b"GET /health/live HTTP/1.1\r\nHost: a\r\nX-Request-ID: " + raw_value + b"\r\n\r\n")
        finally:
            conn.connection_lost(None)
        return bytes(transport.written)

    written = listener.loop.run_until_complete(exchange())
    responses = parse_responses(written, eof=True)
    assert len(responses) == 1, written[:300]
    ids = responses[0].all("X-Request-ID")
    assert len(ids) == 1, responses[0].headers
    assert "set-cookie" not in responses[0].names(), "a request field was reflected into the response"
    return responses[0].status, ids[0]


raw_ids = st.one_of(
    allowed_id.map(str.encode),
    hostile_id.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.builds(lambda a, b: a + b, allowed_id.map(str.encode), st.sampled_from([b"\xff", b"\x80", b"\x7f", b"\x01", b"\r\nX: y"])),
)


@FUZZ
@given(raw=raw_ids)
@example(raw=b"abc\r\nSet-Cookie: a=b")
@example(raw=b" padded\t")
def test_main_listener_keeps_exactly_the_valid_ids(listener: Listener, raw: bytes) -> None:
    status, shown = answer(listener, raw)
    if b"\r\n" in raw:
        # CRLF ends the field: the id is what came before it, the rest other header lines (valid
        # or not). Whatever happens, the answer carries a UUID4 or exactly a valid id.
        before = raw.split(b"\r\n", 1)[0].strip(b" \t")
        assert UUID4.match(shown) or (before.isascii() and id_is_kept(before.decode()) and shown == before.decode()), (raw, shown)
        return
    # What the id is after HTTP parsing: surrounding spaces and tabs are not part of a field value.
    value = raw.strip(b" \t")
    well_formed = not any(b in raw for b in b"\r\n\x00") and all(b >= 0x20 or b == 0x09 for b in raw) and 0x7F not in raw
    if well_formed and value.isascii() and id_is_kept(value.decode("ascii")):
        assert shown == value.decode("ascii"), (raw, status, shown)
    else:
        assert UUID4.match(shown), (raw, status, shown)
        assert shown.encode() != value


# --------------------------------------------------------------------------- traceparent
def lc_hex(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789abcdef", min_size=n, max_size=n)


def nonzero_hex(n: int) -> st.SearchStrategy[str]:
    """Lower-case hex, never all zeros (a filter would be rejected often: zeros are the simplest)."""
    return st.builds(lambda t, i, c: t[:i] + c + t[i + 1 :], lc_hex(n), st.integers(0, n - 1), st.sampled_from("123456789abcdef"))


def broken_hex(n: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just("0" * n),
        lc_hex(n).map(str.upper),
        lc_hex(n - 1),
        lc_hex(n + 1),
        st.text(alphabet="0123456789abcdefgABCDEF-_ xé", min_size=n, max_size=n),
    )


SEPARATOR_MUTATIONS = st.sampled_from(["_", "", "--", " ", "+", "\t"])
MUTATIONS: dict[int, st.SearchStrategy[str]] = {
    0: st.sampled_from(["ff", "0A", "0g", "1", "000", "fF", "00 ", " 00", ""]),
    1: SEPARATOR_MUTATIONS,
    2: broken_hex(32),
    3: SEPARATOR_MUTATIONS,
    4: broken_hex(16),
    5: SEPARATOR_MUTATIONS,
    6: st.sampled_from(["0F", "1", "zz", "001", "", "0x"]),
    7: st.sampled_from(["-", "x", " ", "\t", "-é", "--", "-\t"]) | st.text(max_size=6),
}


@st.composite
def near_valid_traceparents(draw: st.DrawFn) -> str:
    """A valid traceparent (version 00 or a future one) with zero to two parts broken."""
    version = draw(st.sampled_from(["00", "00", "00", "01", "cc", "fe"]))
    trace_id = draw(nonzero_hex(32))
    parent_id = draw(nonzero_hex(16))
    tail = "" if version == "00" else draw(st.sampled_from(["", "-", "-x-y", "-" + "z" * 30]))
    parts = [version, "-", trace_id, "-", parent_id, "-", draw(st.sampled_from(["00", "01", "ff", "a5"])), tail]
    for index in draw(st.lists(st.integers(0, 7), max_size=2)):
        parts[index] = draw(MUTATIONS[index])
    return "".join(parts)


traceparents = st.one_of(
    near_valid_traceparents(),
    near_valid_traceparents(),
    st.text(max_size=80),
    st.builds(lambda t: "01-" + "a" * 32 + "-" + "b" * 16 + "-01-" + t, st.text(min_size=440, max_size=480)),
)


@settings(FUZZ, max_examples=1000)
@given(value=traceparents)
@example(value="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")  # the spec's example
@example(value="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-")  # version 00 admits no suffix
@example(value="cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds")
@example(value="cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x")
def test_parse_traceparent_accepts_exactly_the_w3c_valid_values(value: str) -> None:
    # Header values cannot hold CR, LF or NUL (the HTTP parsers refuse them first), so the
    # property covers every value that can arrive in a header.
    if any(c in value for c in "\r\n\x00"):
        return
    expected = w3c_trace_id(value)
    raw = value.encode("utf-8", "surrogatepass")  # as the main listener reads it; the cap counts bytes
    assert parse_traceparent(raw) == (expected if len(raw) <= MAX_TRACEPARENT else None), value
    # Decoded values (aiohttp): non-ASCII is never trace context (agent.rules.ids), even in the
    # free-form tail a future version may carry.
    assert parse_traceparent_text(value) == (expected if value.isascii() else None), value


@settings(FUZZ, max_examples=200)
@given(st.integers())
def test_generated_ids_and_traceparents_are_valid(_: int) -> None:
    request_id, traceparent, trace_id = new_ids()
    assert UUID4.match(request_id)
    assert w3c_trace_id(traceparent) == trace_id and traceparent.startswith("00-")
    rule_request_id, fresh, fresh_id = new_ids()
    assert UUID4.match(rule_request_id)
    assert w3c_trace_id(fresh) == fresh_id
