"""Fuzzing request header lists through the main listener (in-process, real TCP) to a recording
upstream.

For any valid request head with random fields, the upstream must see:

* no hop-by-hop field (RFC 9110 §7.6.1) and no field named in the client's ``Connection``
  (unless the agent sets that field itself, with its own value);
* exactly one ``X-Request-ID`` (the client's when it is valid, else a UUID4; the client gets the
  same one back), exactly one ``X-Forwarded-For`` holding the peer (the client's value is not
  trusted), one ``X-Forwarded-Proto``, one ``traceparent`` (the client's when W3C-valid, else a
  fresh one) and ``tracestate`` only with the client's valid ``traceparent``;
* every other field of the client, in order, with its value unchanged.

Fixed seed (``derandomize=True``).
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from tests.corpus.harness import ECHO_PREFIX, AgentThread, UpstreamRequest, connect, send_and_read
from tests.reliability.test_fuzz_ids import allowed_id, id_is_kept, near_valid_traceparents, w3c_trace_id
from tests.support.responses import UUID4, parse_responses

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Hypothesis' failure explanation imports mypy_extensions, whose DeprecationWarning the project's
# filterwarnings=error turns into an INTERNALERROR that hides the falsifying example.
pytestmark = pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding", b"upgrade", b"trailer"}
HOP_BY_HOP |= {b"proxy-authorization", b"proxy-authenticate", b"content-length"}
AGENT_SET = {b"host", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"traceparent"}
REPLACED = {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"expect"}
TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
VALID_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def random_case(name: str, flips: list[bool]) -> str:
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(name, flips + [False] * len(name), strict=False))


special_names = st.sampled_from(
    [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Upgrade",
        "Trailer",
        "Proxy-Authorization",
        "Proxy-Authenticate",
        "X-Request-ID",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "Forwarded",
        "traceparent",
        "tracestate",
        "Expect",
        "Authorization",
        "Cookie",
        "Accept",
        "User-Agent",
        "X-Error-ID",
    ]
)
special = st.builds(random_case, special_names, st.lists(st.booleans(), max_size=20))
names = st.one_of(special, special, st.text(TCHAR, min_size=1, max_size=16))
values = st.text(alphabet=string.printable[:94] + " \t" + "\xa0\xe9\xff", max_size=40).map(lambda v: v.encode("latin-1"))
special_values = st.sampled_from(
    [
        b"close",
        b"keep-alive",
        b"upgrade",
        b"trailers",
        b"websocket",
        b"1.2.3.4",
        b"https",
        b"req-123",
        b"abc\xff",
        b"a" * 129,
        VALID_TRACEPARENT.encode(),
        b"00-bad",
        b"vendor=opaque",
        b"for=1.2.3.4",
        b"100-continue",
        b"",
    ]
)


def legal(value: bytes) -> bool:
    """A field value the parser accepts: no CTL but HTAB (obs-text is fine)."""
    return all(b >= 0x20 or b == 0x09 for b in value) and 0x7F not in value


typed_fields = st.one_of(
    st.tuples(st.just(b"traceparent"), near_valid_traceparents().map(str.encode)),
    st.tuples(st.just(b"tracestate"), st.sampled_from([b"vendor=opaque", b"a=1,b=2", b""])),
    st.tuples(st.just(b"X-Request-ID"), allowed_id.map(str.encode) | values),
).filter(lambda field: legal(field[1]))


@dataclass
class Head:
    fields: list[tuple[bytes, bytes]]

    def encode(self, target: bytes) -> bytes:
        lines = b"".join(b"%s: %s\r\n" % pair for pair in self.fields)
        return b"GET %s HTTP/1.1\r\nHost: fuzz.test\r\n%s\r\n" % (target, lines)


@st.composite
def heads(draw: st.DrawFn) -> Head:
    fields = draw(st.lists(st.tuples(names.map(str.encode), values | special_values) | typed_fields, max_size=12))
    if draw(st.integers(0, 2)):
        # A Connection header naming fields of this request, fields the agent sets, and junk.
        pool = [n for n, _ in fields] + [n.encode() for n in ("X-Request-ID", "X-Forwarded-For", "traceparent", "Host")]
        tokens = draw(
            st.lists(st.sampled_from(pool) | st.sampled_from([b"close", b"keep-alive", b"x-junk", b""]), min_size=1, max_size=5)
        )
        separator = draw(st.sampled_from([b",", b", ", b" ,\t", b",,"]))
        fields.insert(draw(st.integers(0, len(fields))), (b"Connection", separator.join(tokens)))
    # Never framing fields (a body is the corpus' business) nor a second Host (a 400).
    return Head([(n, v) for n, v in fields if n.lower() not in (b"content-length", b"transfer-encoding", b"host")])


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentThread]:
    with AgentThread() as running:
        yield running
    assert not running.loop_errors, running.loop_errors


def connection_tokens(fields: list[tuple[bytes, bytes]]) -> set[bytes]:
    return {t.strip(b" \t").lower() for n, v in fields if n.lower() == b"connection" for t in v.split(b",") if t.strip(b" \t")}


def send(agent: AgentThread, head: Head, number: int) -> tuple[bytes, UpstreamRequest]:
    target = b"/fuzz/headers/%d" % number
    found: list[UpstreamRequest] = []
    sock = connect(agent.port)
    try:
        got = send_and_read(sock, head.encode(target), stop=lambda d: d.endswith(ECHO_PREFIX + target), timeout_s=5)
    finally:
        sock.close()
    agent.settle(1)
    found = [r for r in agent.upstream.stats.requests[-5:] if r.target == target]
    assert len(found) == 1, f"the upstream got {len(found)} requests for {target!r}; client got {got.data[:300]!r}"
    return got.data, found[0]


COUNTER = iter(range(10**9))


@FUZZ
@given(head=heads())
def test_random_header_lists_are_forwarded_cleanly(agent: AgentThread, head: Head) -> None:
    note(f"head: {head.encode(b'/')!r}")
    data, upstream = send(agent, head, next(COUNTER))
    fields = [(n, v.strip(b" \t")) for n, v in head.fields]
    named = connection_tokens(head.fields)
    lower_names = upstream.names()
    present = {n.lower() for n, _ in fields}
    event(f"Connection names a field of the request: {bool(named & present)}")
    event(f"Connection names a field the agent sets: {bool(named & AGENT_SET)}")
    event(f"hop-by-hop field sent: {bool(present & HOP_BY_HOP - {b'connection'})}")

    # Hop-by-hop and Connection-named fields never reach the app (unless the agent sets them).
    leaked = sorted({n.decode() for n in lower_names if n in HOP_BY_HOP or (n in named and n not in AGENT_SET)})
    assert not leaked, f"forwarded: {leaked}"
    for name in (b"host", b"x-request-id", b"x-forwarded-for", b"x-forwarded-proto", b"traceparent"):
        assert lower_names.count(name) == 1, f"{lower_names.count(name)} {name.decode()} fields upstream"
    assert upstream.all(b"x-forwarded-for") == [b"127.0.0.1"]
    assert upstream.all(b"x-forwarded-proto") == [b"http"]
    assert upstream.all(b"host") == [b"fuzz.test"]

    # The request id: the client's when it sent exactly one valid id, else a fresh UUID4.
    incoming = [v for n, v in fields if n.lower() == b"x-request-id"]
    forwarded_id = upstream.all(b"x-request-id")[0].decode()
    if len(incoming) == 1 and incoming[0].isascii() and id_is_kept(incoming[0].decode()):
        event("a valid X-Request-ID was sent")
        assert forwarded_id == incoming[0].decode()
    elif len(incoming) > 1:
        valid = {v.decode() for v in incoming if v.isascii() and id_is_kept(v.decode())}
        assert UUID4.match(forwarded_id) or forwarded_id in valid
    else:
        assert UUID4.match(forwarded_id), forwarded_id
    responses = parse_responses(data, eof=False)
    assert [r.status for r in responses] == [200]
    assert responses[0].all("X-Request-ID") == [forwarded_id], "the client did not get the id the app got"

    # Trace context: a valid incoming traceparent is kept (with its tracestate), else replaced.
    parents = [v.decode("latin-1") for n, v in fields if n.lower() == b"traceparent"]
    forwarded_parent = upstream.all(b"traceparent")[0].decode("latin-1")
    assert w3c_trace_id(forwarded_parent) is not None, forwarded_parent
    kept = forwarded_parent in parents
    if len(parents) == 1 and w3c_trace_id(parents[0]):
        event("a valid traceparent was sent")
        assert kept
    elif not any(w3c_trace_id(p) for p in parents):
        assert not kept
    states = [v for n, v in fields if n.lower() == b"tracestate"]
    if not kept or b"tracestate" in named:
        assert not upstream.all(b"tracestate"), "tracestate forwarded without the traceparent it belongs to"
    else:
        assert upstream.all(b"tracestate") == states

    # Every other field arrives, in order, unchanged.
    skipped = HOP_BY_HOP | REPLACED | named | {b"x-request-id", b"traceparent", b"tracestate"}
    expected = [(n.lower(), v) for n, v in fields if n.lower() not in skipped]
    agent_added = AGENT_SET | {b"tracestate"}
    actual = [(n.lower(), v) for n, v in upstream.headers if n.lower() not in agent_added]
    assert actual == expected
