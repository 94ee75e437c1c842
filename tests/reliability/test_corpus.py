"""Replay every raw request in ``tests/corpus/requests/`` against the running main listener.

Each case is sent twice:

* over TCP in one write to the in-process main listener (``tests/support/inprocess.py``) in front
  of a recording upstream: the client must get exactly the statuses in ``NAME.expect``, the
  connection must close (or stay usable: a probe request on it is answered) as expected, and the
  upstream must receive exactly what is allowed (``none``: not one byte);
* split into small pieces, fed straight into a ``ClientConnection`` whose transport honours
  ``pause_reading``: the verdict must not depend on how the bytes were segmented (a head can
  legitimately be forwarded before a bad body arrives, so there ``none`` means "no complete
  request").

Every upstream request must also be clean: one Host, one X-Request-ID, the agent's own
X-Forwarded-For, no hop-by-hop field, unambiguous framing. Cases marked ``bug:`` are strict
xfails: they start failing the suite (XPASS) once the agent is fixed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.proxy.listener import MAX_PIPELINED, ClientConnection
from tests.corpus import generate
from tests.corpus.format import Case, load_cases
from tests.corpus.harness import (
    ECHO_PREFIX,
    AgentThread,
    FakeTransport,
    UpstreamRequest,
    connect,
    feed,
    pieces,
    send_and_read,
)
from tests.support.responses import UUID4, IncompleteResponse, RawResponse, parse_responses

CASES = load_cases()
PROBE_TARGET = b"/__corpus_probe__"
PROBE = b"GET " + PROBE_TARGET + b" HTTP/1.1\r\nHost: corpus.test\r\n\r\n"
ERROR_CODES = {400: "BAD_REQUEST", 405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT", 413: "PAYLOAD_TOO_LARGE"}
# Never forwarded, whatever the client sent (RFC 9110 §7.6.1); framing fields are the agent's own.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade", b"trailer", b"proxy-authorization"}
SPLIT_PIECES = 512  # at most this many data_received calls per case


def params(split: bool) -> list[Any]:
    out: list[Any] = []
    for case in CASES:
        if split and not case.expect.split:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=case.expect.bug)] if case.expect.bug else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentThread]:
    with AgentThread() as running:
        sock = connect(running.port)  # one request first: the listener's context is reachable
        try:
            got = send_and_read(sock, PROBE, stop=lambda d: d.endswith(ECHO_PREFIX + PROBE_TARGET))
        finally:
            sock.close()
        assert got.data.startswith(b"HTTP/1.1 200 "), got.data[:200]
        yield running
    assert not running.loop_errors, running.loop_errors


# --------------------------------------------------------------------------- outcome and checks
@dataclass
class Outcome:
    data: bytes  # every byte the agent sent the client
    closed: bool
    requests: list[UpstreamRequest]  # complete requests the upstream received (probe excluded)
    upstream_bytes: int  # bytes the upstream received before any probe
    incomplete: int  # upstream connections that ended inside a request
    framing_errors: list[str]
    loop_errors: list[str]
    in_flight_leaked: int = 0  # requests still counted in ctx.in_flight after the connection closed
    probe: bytes | None = None  # the answer to the probe sent after a keep-alive case
    problems: list[str] = field(default_factory=list)


def head_flags(payload: bytes) -> list[bool]:
    return [payload.startswith(b"HEAD ")]


def finals_of(data: bytes, *, eof: bool, head_for: list[bool]) -> list[RawResponse] | None:
    try:
        return [r for r in parse_responses(data, eof=eof, head_for=head_for) if r.status >= 200]
    except (IncompleteResponse, ValueError, AssertionError, IndexError):
        return None


def count_complete(data: bytes, head_for: list[bool], want: int = 0) -> int:
    """Complete final responses at the start of ``data`` (a partial one at the end is ignored).
    With ``want``, a cheap count of status lines first: no parsing while fewer can have arrived."""
    if want and data.count(b"HTTP/1.1 ") < want:
        return 0
    end = len(data)
    while end > 0:
        finals = finals_of(data[:end], eof=False, head_for=head_for)
        if finals is not None:
            return sum(1 for r in finals if r.complete)
        cut = data.rfind(b"HTTP/1.1 ", 0, end)
        if cut <= 0:
            return 0
        end = cut
    return 0


def reader_stop(want: int, close: bool, head_for: list[bool], grace_s: float = 0.3) -> Callable[[bytes], bool] | None:
    """Stop reading once ``want`` responses arrived; a closing case waits ``grace_s`` for EOF."""
    if close and want == 0:
        return None  # read until the agent closes
    reached: list[float] = []

    def stop(data: bytes) -> bool:
        if count_complete(data, head_for, want) < want:
            return False
        if not close:
            return True
        if not reached:
            reached.append(time.monotonic())
        return time.monotonic() - reached[0] > grace_s

    return stop


def in_flight(agent: AgentThread) -> int:
    ctx = agent.accepted[0].ctx
    return agent.call(lambda: ctx.in_flight)


def in_flight_leaked(agent: AgentThread, before: int) -> int:
    """How many more requests are counted in flight than before the case (waits briefly)."""
    deadline = time.monotonic() + 0.5
    while (now := in_flight(agent)) != before and time.monotonic() < deadline:
        time.sleep(0.01)
    return now - before


def check(case: Case, outcome: Outcome, *, split: bool) -> None:
    expect = case.expect
    problems: list[str] = []
    head_for = head_flags(case.payload)
    try:
        responses = parse_responses(outcome.data, eof=outcome.closed, head_for=head_for)
    except (IncompleteResponse, ValueError, AssertionError) as exc:
        pytest.fail(f"{case.name}: the agent's bytes do not parse as responses ({exc}): {outcome.data[:400]!r}")
    finals = [r for r in responses if r.status >= 200]
    statuses = tuple(r.status for r in finals)
    if statuses != expect.statuses:
        shown = statuses if len(statuses) < 12 else f"{len(statuses)} responses: {statuses[:3]}...{statuses[-3:]}"
        problems.append(f"statuses {shown}, expected {expect.statuses if len(expect.statuses) < 12 else len(expect.statuses)}")
    if expect.interim is not None and len(responses) - len(finals) != expect.interim:
        problems.append(f"{len(responses) - len(finals)} interim responses, expected {expect.interim}")
    if any(not r.complete for r in finals):
        problems.append("a response ended before its body did")
    if expect.close and not outcome.closed:
        problems.append("the connection was left open")
    if not expect.close:
        if outcome.closed:
            problems.append("the connection was closed")
        elif outcome.probe is not None and not outcome.probe.endswith(ECHO_PREFIX + PROBE_TARGET):
            problems.append(f"a request sent after the case was not answered in sync: {outcome.probe[:200]!r}")
    for index, response in enumerate(finals):
        if response.status >= 400:
            head_only = index < len(head_for) and head_for[index]
            problems += [f"response {index}: {p}" for p in error_problems(response, head_only=head_only)]
        if expect.close and index == len(finals) - 1 and "close" not in (response.header("Connection") or "").lower():
            problems.append(f"response {index} ({response.status}) lacks Connection: close")
    # What reached the upstream.
    new = outcome.requests
    if expect.upstream == "none":
        if new or (outcome.upstream_bytes and not split):
            problems.append(f"the upstream received {outcome.upstream_bytes} bytes, {len(new)} requests: {targets(new)}")
    elif expect.upstream == "incomplete":
        if new:
            problems.append(f"the upstream received a complete request: {targets(new)}")
    else:
        if len(new) != expect.upstream_requests or outcome.incomplete:
            problems.append(
                f"the upstream received {len(new)} complete requests ({targets(new)}) and {outcome.incomplete} partial ones, "
                f"expected {expect.upstream}"
            )
        bodies = [r.body for r in new]
        if expect.upstream_bodies and bodies != list(expect.upstream_bodies):
            problems.append(f"upstream bodies {bodies!r}, expected {list(expect.upstream_bodies)!r}")
        echoed = [r.body for r in finals if r.body.startswith(ECHO_PREFIX)]
        forwarded = [ECHO_PREFIX + r.target for r in new if r.method != b"HEAD"]
        if echoed != forwarded[: len(echoed)] or (statuses == expect.statuses and len(echoed) != len(forwarded)):
            problems.append("responses out of order with the requests the upstream answered")
    for index, request in enumerate(new):
        upgrade = expect.upstream_upgrades[index] if index < len(expect.upstream_upgrades) else "-"
        problems += [f"upstream request {request.target[:60]!r}: {p}" for p in request_problems(request, upgrade)]
    if outcome.framing_errors:
        problems.append(f"the agent sent the upstream malformed bytes: {outcome.framing_errors}")
    if outcome.loop_errors:
        problems.append(f"an agent callback raised: {outcome.loop_errors}")
    if outcome.in_flight_leaked:
        problems.append(f"{outcome.in_flight_leaked} requests still counted in flight after the connection closed")
    if problems:
        pytest.fail(f"{case.name}: " + "; ".join(problems) + f"\n  got: {outcome.data[:300]!r}")


def targets(requests: list[UpstreamRequest]) -> list[bytes]:
    shown = [r.target[:60] for r in requests[:5]]
    return [*shown, b"..."] if len(requests) > 5 else shown


def error_problems(response: RawResponse, *, head_only: bool = False) -> list[str]:
    """The agent's own error: JSON with an error_id, its request id, and the security headers
    (for a HEAD request the same head without the content)."""
    problems = []
    if response.header("Content-Type") != "application/json":
        return [f"status {response.status} without the agent's JSON error: {response.body[:120]!r}"]
    if head_only:
        if not UUID4.match(response.header("X-Error-ID") or ""):
            problems.append("no X-Error-ID")
        if response.header("X-Content-Type-Options") != "nosniff":
            problems.append("no security headers")
        return problems
    try:
        body = json.loads(response.body)
    except ValueError:
        return [f"unparsable error body {response.body[:120]!r}"]
    code = ERROR_CODES.get(response.status)
    if code is not None and body.get("error_code") != code:
        problems.append(f"error_code {body.get('error_code')!r}, expected {code}")
    if not UUID4.match(str(body.get("error_id"))):
        problems.append(f"error_id {body.get('error_id')!r}")
    if body.get("request_id") != response.header("X-Request-ID") or not body.get("request_id"):
        problems.append("request_id of the body and X-Request-ID differ")
    if response.header("X-Content-Type-Options") != "nosniff":
        problems.append("no security headers")
    return problems


def request_problems(request: UpstreamRequest, upgrade: str = "-") -> list[str]:
    """What is wrong with one upstream request; ``upgrade``: the Upgrade value it must carry ("-": none)."""
    problems = []
    names = request.names()
    allowed: set[bytes] = set()
    if upgrade != "-":
        allowed = {b"connection", b"upgrade"}  # the tunnel the client asked for (RFC 9110 §7.8)
        if request.all(b"upgrade") != [upgrade.encode()] or request.all(b"connection") != [b"Upgrade"]:
            problems.append(
                f"Upgrade {request.all(b'upgrade')!r} with Connection {request.all(b'connection')!r}, "
                f"expected exactly Upgrade: {upgrade} and Connection: Upgrade"
            )
    for name in (b"host", b"x-request-id", b"x-forwarded-for", b"traceparent"):
        if names.count(name) != 1:
            problems.append(f"{names.count(name)} {name.decode()} fields")
    if request.all(b"x-forwarded-for") != [b"127.0.0.1"]:
        problems.append(f"X-Forwarded-For {request.all(b'x-forwarded-for')!r}, not the peer")
    hop = sorted({n.decode() for n in names if n in HOP_BY_HOP - allowed})
    if hop:
        problems.append(f"hop-by-hop fields forwarded: {hop}")
    if request.version != b"HTTP/1.1":
        problems.append(f"version {request.version!r}")
    return problems


# --------------------------------------------------------------------------- one write over TCP
def replay(agent: AgentThread, case: Case) -> Outcome:
    expect = case.expect
    stats = agent.upstream.stats
    bytes0, requests0, incomplete0, errors0, loop0 = (
        stats.bytes_received,
        len(stats.requests),
        stats.incomplete,
        len(stats.errors),
        len(agent.loop_errors),
    )
    agent.max_queued = 0
    flying = in_flight(agent)
    head_for = head_flags(case.payload)
    # Deadline cases wait for the agent's 0.5 s deadlines (plus the 0.25 s sweep); others answer at once.
    # A long pipeline gets time for every round trip to the app on a busy machine.
    timeout = (4.0 if not expect.statuses or 408 in expect.statuses else 3.0) + 0.03 * len(expect.statuses)
    sock = connect(agent.port)
    probe: bytes | None = None
    upstream_bytes: int | None = None
    try:
        got = send_and_read(sock, case.payload, stop=reader_stop(len(expect.statuses), expect.close, head_for), timeout_s=timeout)
        if not expect.close and not got.closed:
            agent.settle()  # what the case sent the upstream, before the probe adds to it
            upstream_bytes = stats.bytes_received - bytes0
            answer = send_and_read(
                sock, PROBE, stop=lambda d: d.endswith(ECHO_PREFIX + PROBE_TARGET) or d.count(b"HTTP/1.1 ") > 1
            )
            probe = answer.data
    finally:
        sock.close()
    agent.settle()
    if upstream_bytes is None:
        upstream_bytes = stats.bytes_received - bytes0
    new = [r for r in stats.requests[requests0:] if r.target != PROBE_TARGET]
    assert agent.max_queued <= MAX_PIPELINED, f"{agent.max_queued} requests queued on one connection"
    return Outcome(
        data=got.data,
        closed=got.closed,
        requests=new,
        upstream_bytes=upstream_bytes,
        incomplete=stats.incomplete - incomplete0,
        framing_errors=stats.errors[errors0:],
        loop_errors=agent.loop_errors[loop0:],
        in_flight_leaked=in_flight_leaked(agent, flying),
        probe=probe,
    )


@pytest.mark.parametrize("case", params(split=False))
def test_replay_in_one_write(agent: AgentThread, case: Case) -> None:
    check(case, replay(agent, case), split=False)


# --------------------------------------------------------------------------- split into pieces
def split_replay(agent: AgentThread, case: Case) -> Outcome:
    expect = case.expect
    stats = agent.upstream.stats
    bytes0, requests0, incomplete0, errors0, loop0 = (
        stats.bytes_received,
        len(stats.requests),
        stats.incomplete,
        len(stats.errors),
        len(agent.loop_errors),
    )
    ctx = agent.accepted[0].ctx
    flying = in_flight(agent)
    size = max(1, -(-len(case.payload) // SPLIT_PIECES))
    head_for = head_flags(case.payload)

    async def run() -> tuple[bytes, bool]:
        conn = ClientConnection(ctx)
        transport = FakeTransport(on_close=lambda: conn.connection_lost(None))
        conn.connection_made(transport)
        await feed(conn, transport, pieces(case.payload, size))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            done = count_complete(bytes(transport.written), head_for, len(expect.statuses)) >= len(expect.statuses)
            if transport.ended or (done and not expect.close):
                break
            if done and expect.statuses:
                deadline = min(deadline, time.monotonic() + 0.3)  # only the close is missing
            await asyncio.sleep(0.002)
        closed = transport.ended  # EOF or close: what a client sees as the end of the connection
        if not transport.closed:
            transport.close()
        return bytes(transport.written), closed

    data, closed = asyncio.run_coroutine_threadsafe(run(), agent.loop).result(10)
    agent.settle()
    return Outcome(
        data=data,
        closed=closed,
        requests=stats.requests[requests0:],
        upstream_bytes=stats.bytes_received - bytes0,
        incomplete=stats.incomplete - incomplete0,
        framing_errors=stats.errors[errors0:],
        loop_errors=agent.loop_errors[loop0:],
        in_flight_leaked=in_flight_leaked(agent, flying),
    )


@pytest.mark.parametrize("case", params(split=True))
def test_replay_split_into_pieces(agent: AgentThread, case: Case) -> None:
    check(case, split_replay(agent, case), split=True)


# --------------------------------------------------------------------------- the corpus itself
def test_committed_corpus_is_what_generate_py_writes() -> None:
    assert generate.main(["--check"]) == 0, "run: python -m tests.corpus.generate"


def test_corpus_covers_every_family() -> None:
    names = [c.name for c in CASES]
    for prefix in (
        "smuggle-",
        "te-",
        "smuggler-",
        "cl-",
        "chunk-",
        "trailer-",
        "header-",
        "host-",
        "head-",
        "line-",
        "pipeline-",
        "body-",
        "timeout-",
        "upgrade-",
        "control-",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    assert sum(1 for c in CASES if c.expect.upstream_requests) >= 10, "too few controls that reach the upstream"
