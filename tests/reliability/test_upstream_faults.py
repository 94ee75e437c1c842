"""Scenario table B (reliability-anchors.md §7): the upstream app misbehaves, as seen through the
fault proxy in the middle, with the real agent as a subprocess and the real upstream app.

Two fault proxies sit in front of the app: ``data`` carries the agent's proxied traffic
(``upstream.url``) and ``check`` carries its ``upstream`` health check, so each proxy's counters
are exact and a toxic hits the check only when a test says so. tests/proxy/test_misbehaving_upstream.py
covers the same rows with a hand-written misbehaving server (13 malformed responses, byte-exact
truncation); here the fault is produced on the wire between two real programs.

Every scenario asserts what the agent reports: the JSON error and its log line, the access log,
``agent_upstream_errors_total{reason}``, and readiness / the check's detail on the admin listener.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fast_checks
from tests.support.agent import AgentProcess
from tests.support.faultproxy import FaultProxy
from tests.support.memory import RssSampler
from tests.support.polling import wait_until
from tests.support.rawhttp import get, new_request_id, raw_exchange, request
from tests.support.reports import check_detail, records, slowest_probe, upstream_errors, wait_check
from tests.support.responses import SECURITY_HEADERS, UUID4, RawResponse
from tests.support.upstream import GZIP_PAYLOAD, UpstreamProcess

MIB = 1024 * 1024
READ_TIMEOUT_S = 1.0
CHECK_TIMEOUT_S = 0.5
FAIL_BUDGET_S = 0.3 * 1.1 * 2 + CHECK_TIMEOUT_S * 2 + 0.5
PROBE_BUDGET_S = 0.1


@dataclass
class Setup:
    agent: AgentProcess
    data: FaultProxy  # the proxied traffic
    check: FaultProxy  # the upstream health check
    app: UpstreamProcess

    def both(self, toxic: Callable[[FaultProxy], None]) -> None:
        toxic(self.data)
        toxic(self.check)


@pytest.fixture
def proxied(
    agent_factory: Callable[..., AgentProcess], healthy_upstream: UpstreamProcess, fault_proxy: Callable[[str, int], FaultProxy]
) -> Callable[..., Setup]:
    def make(*, read_timeout_s: float = READ_TIMEOUT_S, check: bool = True) -> Setup:
        data = fault_proxy(healthy_upstream.host, healthy_upstream.port)
        check_proxy = fault_proxy(healthy_upstream.host, healthy_upstream.port)
        config = fast_checks(data.url, interval_s=0.3, timeout_s=CHECK_TIMEOUT_S, failure_threshold=2)
        config["upstream"].update(read_timeout_s=read_timeout_s, connect_timeout_s=0.5)
        config["server"]["drain_delay_s"] = 0.0  # quick teardown
        config["checks"]["upstream"] = {"url": check_proxy.url + "/health"} if check else {"enabled": False}
        agent = agent_factory(config)
        agent.wait_for("/health/ready", 200, timeout=5)
        return Setup(agent, data, check_proxy, healthy_upstream)

    return make


def agent_error(response: RawResponse, status: int, code: str) -> dict[str, Any]:
    """The agent's own JSON error: status, code, ids, headers."""
    assert response.status == status, (response.status, response.body[:300])
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code and UUID4.match(body["error_id"])
    assert response.header("X-Error-ID") == body["error_id"]
    assert response.header("Content-Type") == "application/json"
    assert all(h in response.names() for h in SECURITY_HEADERS)
    return body


def failure_logged(agent: AgentProcess, error_id: str) -> dict[str, Any]:
    """The one "request failed" line carrying that error id."""
    assert wait_until(lambda: bool(records(agent, "request failed", error_id=error_id)), timeout=2)
    (line,) = records(agent, "request failed", error_id=error_id)
    return line


def access_line(agent: AgentProcess, request_id: str) -> dict[str, Any]:
    assert wait_until(lambda: bool(records(agent, "request completed", request_id=request_id)), timeout=2)
    (line,) = records(agent, "request completed", request_id=request_id)
    return line


def increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {reason: after[reason] - before.get(reason, 0) for reason in after if after[reason] != before.get(reason, 0)}


# --------------------------------------------------------------------------- B1
async def test_b1_upstream_refusing_connections(proxied: Callable[..., Setup]) -> None:
    """Nothing listens at the app's address: 502 at once, counted as ``connect``; the upstream
    check fails too, so readiness turns 503 (liveness stays 200); all recover by themselves."""
    s = proxied()
    before = upstream_errors(s.agent)
    s.both(lambda p: p.down())
    started = time.monotonic()
    response = await get(s.agent.port, "/echo")
    assert time.monotonic() - started < 0.5
    body = agent_error(response, 502, "UPSTREAM_UNAVAILABLE")
    assert failure_logged(s.agent, body["error_id"])["reason"] == "connect: ConnectionRefusedError"
    agent_error(await get(s.agent.port, "/upload", method="POST", body=b"x" * 100), 502, "UPSTREAM_UNAVAILABLE")
    assert increase(before, upstream_errors(s.agent)) == {"connect": 2}

    s.agent.wait_for("/health/ready", 503, timeout=FAIL_BUDGET_S + 1)
    assert s.agent.get("/health/ready").json()["failing"] == ["upstream"]
    assert s.agent.get("/health/live").status == 200
    assert "Cannot connect to host" in check_detail(s.agent, "upstream")["message"]

    s.both(lambda p: p.up())
    s.agent.wait_for("/health/ready", 200, timeout=3)
    assert (await get(s.agent.port, "/echo")).status == 200


async def test_b1_reset_before_the_response(proxied: Callable[..., Setup]) -> None:
    """The app's side resets the connection once the request is in (``forward=True``: the app did
    get it). 502 ``reset``; the POST the app already received is not sent again; the check,
    reset the same way, fails and readiness follows."""
    s = proxied()
    s.app.reset_events()
    before = upstream_errors(s.agent)
    s.both(lambda p: p.reset_before_response(forward=True))
    body = agent_error(await get(s.agent.port, "/echo"), 502, "UPSTREAM_UNAVAILABLE")
    assert failure_logged(s.agent, body["error_id"])["reason"] == "reset"
    agent_error(await get(s.agent.port, "/upload", method="POST", body=b'{"charge": 100}'), 502, "UPSTREAM_UNAVAILABLE")
    assert s.data.count("reset_before_response") == 2  # one per request: neither was retried
    assert wait_until(lambda: s.app.events().get("upload_complete") == 1, timeout=3)
    assert increase(before, upstream_errors(s.agent)) == {"reset": 2}

    s.agent.wait_for("/health/ready", 503, timeout=FAIL_BUDGET_S + 1)
    message = check_detail(s.agent, "upstream")["message"]
    assert "ServerDisconnectedError" in message or "Connection reset" in message, message
    s.both(lambda p: p.clear())
    s.agent.wait_for("/health/ready", 200, timeout=3)
    assert s.app.events().get("upload_complete") == 1


# --------------------------------------------------------------------------- B2
async def test_b2_keepalive_closed_as_a_get_arrives_is_retried(proxied: Callable[..., Setup]) -> None:
    """The app closes a pooled keep-alive connection just as the next GET arrives (its bytes are
    lost): the agent retries once on a new connection, the client sees a plain 200, and this is
    not counted as an upstream error."""
    s = proxied(check=False)  # nothing but the test talks to the app: its request count is exact
    assert (await get(s.agent.port, "/peer")).status == 200  # leaves a pooled connection
    s.data.close_on_reuse()
    served = s.app.requests_served()
    before = upstream_errors(s.agent)
    rid = new_request_id()
    response = await get(s.agent.port, "/echo", headers=[("X-Request-ID", rid)])
    assert response.status == 200 and response.json()["method"] == "GET"
    assert s.data.count("close_on_reuse") == 1
    assert s.app.requests_served() == served + 1  # lost on the old connection, answered on a new one
    assert upstream_errors(s.agent) == before
    assert access_line(s.agent, rid)["status"] == 200


async def test_b2_keepalive_closed_as_a_post_arrives_is_never_retried(proxied: Callable[..., Setup]) -> None:
    """Same race for a POST that the app did receive (``forward=True``) before closing: 502,
    counted as ``reset``, and the app processed it exactly once."""
    s = proxied(check=False)
    assert (await get(s.agent.port, "/peer")).status == 200
    s.app.reset_events()
    s.data.close_on_reuse(forward=True)
    before = upstream_errors(s.agent)
    body = agent_error(await get(s.agent.port, "/upload", method="POST", body=b'{"charge": 100}'), 502, "UPSTREAM_UNAVAILABLE")
    assert failure_logged(s.agent, body["error_id"])["reason"] == "reset"
    assert s.data.count("close_on_reuse") == 1
    assert wait_until(lambda: s.app.events().get("upload_complete") == 1, timeout=3)
    await asyncio.sleep(0.3)
    assert s.app.events().get("upload_complete") == 1  # never sent again
    assert increase(before, upstream_errors(s.agent)) == {"reset": 1}


# --------------------------------------------------------------------------- B3
@pytest.mark.slow
async def test_b3_silent_upstream_gives_504_and_probes_stay_fast(proxied: Callable[..., Setup]) -> None:
    """Every response 3 s late, on the proxied path and on the app's health endpoint: 504 at
    ``upstream.read_timeout_s``, that upstream connection closed (not pooled), the check ends at
    its own deadline, and the probes answer from memory in well under 0.1 s."""
    s = proxied()
    before = upstream_errors(s.agent)
    s.both(lambda p: p.latency(3.0))
    started = time.monotonic()
    response = await get(s.agent.port, "/echo", timeout=5)
    elapsed = time.monotonic() - started
    body = agent_error(response, 504, "UPSTREAM_TIMEOUT")
    assert READ_TIMEOUT_S <= elapsed < READ_TIMEOUT_S + 0.6, elapsed
    assert failure_logged(s.agent, body["error_id"])["reason"] == "timeout"
    assert increase(before, upstream_errors(s.agent)) == {"timeout": 1}
    assert s.data.wait_for(lambda: s.data.count("client_closed") == 1, timeout=1)  # the agent dropped it

    s.agent.wait_for("/health/ready", 503, timeout=FAIL_BUDGET_S + 1)
    assert wait_check(s.agent, "upstream", lambda d: d["message"] == "timed out after 0.5s", timeout=2)
    assert slowest_probe(s.agent) < PROBE_BUDGET_S

    s.both(lambda p: p.clear())
    s.agent.wait_for("/health/ready", 200, timeout=3)
    assert (await get(s.agent.port, "/echo")).status == 200


@pytest.mark.slow
async def test_b3_slow_but_progressing_upstream_is_not_cut(proxied: Callable[..., Setup]) -> None:
    """Latency with jitter below the read timeout, and a body trickling at 32 KiB/s for longer than
    the read timeout: both complete. ``read_timeout_s`` bounds silence, not the whole response."""
    s = proxied()
    before = upstream_errors(s.agent)
    s.data.latency(0.3, 0.1)
    started = time.monotonic()
    assert (await get(s.agent.port, "/echo")).status == 200
    assert 0.2 <= time.monotonic() - started < 0.9
    s.data.clear()
    s.data.bandwidth(32 * 1024)
    started = time.monotonic()
    response = await get(s.agent.port, "/bytes/49152", timeout=5)
    elapsed = time.monotonic() - started
    assert response.status == 200 and response.complete and response.body == b"x" * 49152
    assert elapsed > READ_TIMEOUT_S, elapsed
    assert upstream_errors(s.agent) == before


# --------------------------------------------------------------------------- B4
async def test_b4_app_dies_mid_body(proxied: Callable[..., Setup]) -> None:
    """The app's connection ends after the head and 1000 of 100000 body bytes: the client already
    has its 200, gets exactly the bytes that came, then its connection is cut (never a clean
    short response); logged with the request id, counted as ``reset``."""
    s = proxied()
    before = upstream_errors(s.agent)
    s.data.close_mid_body(1000)
    rid = new_request_id()
    ex = await raw_exchange(s.agent.port, request("GET", "/bytes/100000", headers=[("X-Request-ID", rid)]), timeout_s=3)
    assert ex.closed
    (response,) = ex.responses()
    assert response.status == 200 and response.header("Content-Length") == "100000"
    assert response.body == b"x" * 1000 and not response.complete
    assert increase(before, upstream_errors(s.agent)) == {"reset": 1}
    assert records(s.agent, "upstream closed mid-response; cutting the client connection", request_id=rid, bytes_sent=1000)
    line = access_line(s.agent, rid)
    assert line["aborted"] is True and line["status"] == 200 and line["bytes_sent"] == 1000


async def test_b4_reset_right_after_the_response_head(proxied: Callable[..., Setup]) -> None:
    """RST right after the response head: the client has the head and nothing else, then its
    connection is cut; counted as ``reset``."""
    s = proxied()
    before = upstream_errors(s.agent)
    s.data.reset_after_headers()
    rid = new_request_id()
    ex = await raw_exchange(s.agent.port, request("GET", "/bytes/100000", headers=[("X-Request-ID", rid)]), timeout_s=3)
    assert ex.closed
    (response,) = ex.responses()
    assert response.status == 200 and response.body == b"" and not response.complete
    assert s.data.count("reset_after_headers") == 1
    assert increase(before, upstream_errors(s.agent)) == {"reset": 1}
    assert access_line(s.agent, rid)["aborted"] is True


# --------------------------------------------------------------------------- B5
MALFORMED = {
    "garbage": b"garbage\r\n\r\n",
    "nul-in-header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_b5_malformed_response_is_502(proxied: Callable[..., Setup], name: str) -> None:
    """The app's answer is replaced on the wire by a malformed one: the agent's own 502 (never a
    400 passed on, never the bytes), counted as ``protocol``."""
    s = proxied()
    before = upstream_errors(s.agent)
    s.data.respond_with(MALFORMED[name])
    body = agent_error(await get(s.agent.port, "/echo"), 502, "UPSTREAM_UNAVAILABLE")
    assert failure_logged(s.agent, body["error_id"])["reason"].startswith("protocol:")
    assert increase(before, upstream_errors(s.agent)) == {"protocol": 1}
    s.data.clear()
    assert (await get(s.agent.port, "/echo")).status == 200  # the bad connection was not pooled


# --------------------------------------------------------------------------- B6
async def read_at_least(reader: asyncio.StreamReader, n: int) -> int:
    got = 0
    while got < n:
        piece = await asyncio.wait_for(reader.read(MIB), 5)
        assert piece, f"closed after {got} bytes"
        got += len(piece)
    return got


ENDLESS_ID = "endless-response"


async def open_endless(s: Setup) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``GET /bytes/2GiB`` through the agent (request id ``ENDLESS_ID``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", s.agent.port)
    writer.write(request("GET", f"/bytes/{2 * 1024 * MIB}", headers=[("X-Request-ID", ENDLESS_ID)]))
    await writer.drain()
    return reader, writer


async def abort(writer: asyncio.StreamWriter) -> None:
    """Reset a client connection now (asyncio closes the socket on the loop's next turns)."""
    writer.transport.abort()
    await asyncio.sleep(0.01)


def tcp_buffer_max(name: str) -> int:
    """The third field of /proc/sys/net/ipv4/tcp_rmem or tcp_wmem (autotuning's maximum)."""
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 32 * MIB


async def plateau(value: Callable[[], int], *, quiet_s: float, within_s: float) -> int | None:
    """Poll ``value`` until it stays the same for ``quiet_s``; None if it never does in time."""
    deadline = time.monotonic() + within_s
    last, since = value(), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return now
    return None


@pytest.mark.slow
async def test_b6_endless_response_to_a_client_that_stops_reading(proxied: Callable[..., Setup]) -> None:
    """A 2 GiB response and a client that stops reading: the flow from the app stops (the agent
    stops reading the upstream once the client's socket is full), what sits between the app and
    the client is bounded by socket buffers, the agent's memory stays flat, and the stream
    resumes when the client reads again. When the client leaves, so does the upstream connection."""
    s = proxied(read_timeout_s=10.0)
    for _ in range(3):
        assert (await get(s.agent.port, "/bytes/100000")).status == 200
    assert s.agent.process is not None
    before = upstream_errors(s.agent)
    reader, writer = await open_endless(s)
    try:
        with RssSampler(s.agent.process.pid) as rss:
            received = await read_at_least(reader, 16 * MIB)
            stopped_at = await plateau(lambda: s.data.bytes_down, quiet_s=0.5, within_s=4)
            assert stopped_at is not None, "the app kept sending while the client did not read"
            in_flight = stopped_at - received
            await asyncio.sleep(0.3)
            assert s.data.bytes_down == stopped_at
            await read_at_least(reader, 16 * MIB)
            assert s.data.bytes_down > stopped_at  # flowing again
    finally:
        await abort(writer)
    # Between the proxy's counter and the client's reads there are two TCP connections (proxy ->
    # agent, agent -> client): their kernel buffers, which loopback autotuning grows to tcp_rmem /
    # tcp_wmem's maximum, and the agent's own window.
    assert in_flight < 2 * (tcp_buffer_max("tcp_rmem") + tcp_buffer_max("tcp_wmem")) + 8 * MIB, in_flight / MIB
    assert rss.growth < 16 * MIB, f"agent RSS grew {rss.growth / MIB:.1f} MiB"
    assert s.data.wait_for(lambda: s.data.count("client_closed") == 1, timeout=2), s.data.events
    line = access_line(s.agent, ENDLESS_ID)
    assert line["aborted"] is True and line["status"] == 200 and line["bytes_sent"] > 32 * MIB
    assert upstream_errors(s.agent) == before  # pausing for a client is not an upstream failure


@pytest.mark.slow
async def test_b6_client_stalled_longer_than_read_timeout_is_not_an_upstream_timeout(proxied: Callable[..., Setup]) -> None:
    """The client stops reading for longer than ``upstream.read_timeout_s`` while the app is ready
    to send: whatever the agent does with that client (cutting it is fine), the app was not slow,
    so ``agent_upstream_errors_total{reason="timeout"}`` must not blame it."""
    s = proxied(read_timeout_s=READ_TIMEOUT_S)
    before = upstream_errors(s.agent)
    reader, writer = await open_endless(s)
    try:
        await read_at_least(reader, 4 * MIB)
        await asyncio.sleep(READ_TIMEOUT_S * 2)
    finally:
        await abort(writer)
    assert increase(before, upstream_errors(s.agent)) == {}


# --------------------------------------------------------------------------- B7
async def test_b7_client_disconnect_mid_response_closes_the_upstream_connection(proxied: Callable[..., Setup]) -> None:
    """The client goes away after 4 KiB of a slow response: the agent closes that upstream
    connection (the app sees the disconnect), logs one aborted access line and no error, and
    serves the next request on a new upstream connection."""
    s = proxied()
    s.app.reset_events()
    before = upstream_errors(s.agent)
    rid = new_request_id()
    reader, writer = await asyncio.open_connection("127.0.0.1", s.agent.port)
    writer.write(request("GET", "/drip?n=200&interval_s=0.02", headers=[("X-Request-ID", rid)]))
    got = b""
    while len(got) < 4096:
        piece = await asyncio.wait_for(reader.read(4096), 3)
        assert piece
        got += piece
    await abort(writer)
    assert s.data.wait_for(lambda: s.data.count("client_closed") == 1, timeout=2), s.data.events
    assert wait_until(lambda: s.app.events().get("drip_disconnect") == 1, timeout=3)
    line = access_line(s.agent, rid)
    assert line["aborted"] is True and line["status"] == 200
    assert not [r for r in s.agent.log_records() if r["level"] in ("ERROR", "CRITICAL") or "exception" in r]
    assert upstream_errors(s.agent) == before  # the client left; the app did nothing wrong
    accepted = s.data.accepted
    assert (await get(s.agent.port, "/echo")).status == 200
    assert s.data.accepted == accepted + 1


# --------------------------------------------------------------------------- B8
async def test_b8_gzip_passes_byte_for_byte_through_tiny_segments(proxied: Callable[..., Setup]) -> None:
    """A gzip bomb (10 MiB of zeros in 10 KiB) uploaded and a gzip body downloaded, both cut into
    small segments by the fault proxy, which also records the bytes on the app's side of the
    agent: the compressed bodies cross the agent unchanged both ways, ``Content-Encoding`` kept,
    and the agent's memory does not grow by the inflated size."""
    s = proxied()
    before = upstream_errors(s.agent)
    assert s.agent.process is not None
    s.data.slicer(size=64, variation=32, delay_s=0.0, direction="upstream")
    s.data.slicer(size=3, variation=2, delay_s=0.0005, direction="downstream")
    s.data.capture()
    bomb = gzip.compress(b"\0" * (10 * MIB), mtime=0)
    with RssSampler(s.agent.process.pid) as rss:
        response = await get(
            s.agent.port, "/upload", method="POST", body=bomb, headers=[("Content-Encoding", "gzip")], timeout=10
        )
    assert response.status == 200, response.body[:300]
    sent = bytes(s.data.captured["upstream"])
    head, _, body = sent.partition(b"\r\n\r\n")
    assert body == bomb, "the request body reached the app changed"
    assert b"\r\ncontent-encoding: gzip\r\n" in head.lower()
    seen = response.json()  # the test app inflates it itself (aiohttp's server default)
    assert seen["content_encoding"] == "gzip" and seen["bytes"] == 10 * MIB
    assert rss.growth < 8 * MIB

    s.data.capture()
    response = await get(s.agent.port, "/gzip", headers=[("Accept-Encoding", "gzip")], timeout=10)
    compressed = gzip.compress(GZIP_PAYLOAD, mtime=0)
    assert s.data.captured["downstream"].endswith(compressed)  # what the app sent...
    assert response.status == 200 and response.body == compressed  # ...is what the client got
    assert response.header("Content-Encoding") == "gzip"
    assert response.header("X-Seen-Accept-Encoding") == "gzip"
    assert upstream_errors(s.agent) == before
