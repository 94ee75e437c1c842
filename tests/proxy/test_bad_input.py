"""Hostile and malformed client input as raw bytes (reliability-anchors §2, table C).

Each vector must get a 400 (413/405 where the agent's code says so) with the agent's JSON error
and security headers, the connection closed, and nothing may reach the app: the upstream's
request counter (no background checks talk to it) must not move, even with a warm pooled
connection ready to be used. Then the slow clients: slow-loris heads, trickled bodies, and
clients that vanish mid-upload or mid-download.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from agent.rules.errors import code_for_status
from tests.support.polling import async_wait_until
from tests.support.rawhttp import get, raw_exchange
from tests.support.reports import wait_for_log
from tests.support.responses import SECURITY_HEADERS, UUID4

H = b"Host: test.local\r\n"

VECTORS: dict[str, tuple[bytes, tuple[int, ...]]] = {
    # framing / smuggling
    "cl-and-te": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", (400,)),
    "te-and-cl": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG", (400,)),
    "duplicate-cl-same": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", (400,)),
    "duplicate-cl-different": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", (400,)),
    "cl-list": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", (400,)),
    "cl-plus": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", (400,)),
    "cl-negative": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", (400,)),
    "cl-hex": (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", (400,)),
    "chunk-size-Z": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nZ\r\nabc\r\n0\r\n\r\n", (400,)),
    "chunk-size-underscore": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0_2e\r\n\r\n", (400,)),
    "chunk-size-21-digits": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 21 + b"\r\nabc",
        (400,),
    ),
    "chunk-longer-than-size": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        (400,),
    ),
    "chunk-ext-lf": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3;x\nabc\r\n0\r\n\r\n", (400,)),
    "te-gzip-chunked": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", (400,)),
    "te-chunked-chunked": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", (400,)),
    "te-chunked123": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked123\r\n\r\n0\r\n\r\n", (400,)),
    "te-gzip-only": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc", (400,)),
    "te-twice": (
        b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        (400,),
    ),
    "te-on-http10": (b"POST /echo HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,)),
    "te-space-before-colon": (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", (400,)),
    # header syntax
    "obs-fold": (b"GET /echo HTTP/1.1\r\n" + H + b"X-Fold: a\r\n b\r\n\r\n", (400,)),
    "bare-lf": (b"GET /echo HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"\n", (400,)),
    "bare-lf-in-head": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: 1\nX-B: 2\r\n\r\n", (400,)),
    "cr-in-value": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", (400,)),
    "cr-smuggled-te": (b"POST /echo HTTP/1.1\r\n" + H + b"X-Abc: \rxTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,)),
    "nul-in-value": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", (400,)),
    "ctl-in-value": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A: a\x01b\r\n\r\n", (400,)),
    "space-before-colon": (b"GET /echo HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", (400,)),
    "high-byte-in-name": (b"GET /echo HTTP/1.1\r\n" + H + b"\xffX-A: b\r\n\r\n", (400,)),
    "header-line-9kb": (b"GET /echo HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n", (431,)),
    "request-line-9kb": (b"GET /echo/" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", (414,)),
    "200-headers": (b"GET /echo HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n", (431,)),
    "head-over-64k": (
        b"GET /echo HTTP/1.1\r\n" + H + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 8000) for i in range(9)) + b"\r\n",
        (431,),
    ),
    # host and target
    "duplicate-host": (b"GET /echo HTTP/1.1\r\n" + H + b"Host: other.example\r\n\r\n", (400,)),
    "missing-host-http11": (b"GET /echo HTTP/1.1\r\nX-A: b\r\n\r\n", (400,)),
    "absolute-form": (b"GET http://evil.example/echo HTTP/1.1\r\nHost: evil.example\r\n\r\n", (400,)),
    "asterisk-form-get": (b"GET * HTTP/1.1\r\n" + H + b"\r\n", (400,)),
    "http-2.0": (b"GET /echo HTTP/2.0\r\n" + H + b"\r\n", (400,)),
    "http-1.2": (b"GET /echo HTTP/1.2\r\n" + H + b"\r\n", (400,)),
    "http-0.9-ish": (b"GET /echo HTTP/0.9\r\n" + H + b"\r\n", (400,)),
    "h2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400,)),
    "not-http": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, (400,)),
}


async def warm_pool(agent) -> None:
    """One good request first, so an idle upstream connection is ready to be (mis)used."""
    response = await get(agent.port, "/echo")
    assert response.status == 200


async def assert_refused(agent, upstream, data: bytes, statuses: tuple[int, ...], *, code: str | None = None):
    await warm_pool(agent)
    before = upstream.requests_served()
    ex = await raw_exchange(agent.port, data, timeout_s=3)
    await asyncio.sleep(0.2)
    assert upstream.requests_served() == before, "the request reached the upstream app"
    assert ex.closed, f"connection left open; got {ex.data[:300]!r}"
    responses = [r for r in ex.responses() if r.status >= 200]
    assert len(responses) == 1, f"expected exactly one response, got {ex.data[:600]!r}"
    response = responses[0]
    assert response.status in statuses, (response.status, response.body[:300])
    assert response.header("Content-Type") == "application/json"
    body = response.json()
    assert UUID4.match(body["error_id"]) and body["error_code"] == (code or "BAD_REQUEST")
    assert UUID4.match(body["request_id"]) and response.header("X-Request-ID") == body["request_id"]
    missing = [h for h in SECURITY_HEADERS if h not in response.names()]
    assert not missing, f"lacks {missing}"
    lines = wait_for_log(agent, lambda r: r.get("error_id") == body["error_id"])
    assert lines and lines[0]["request_id"] == body["request_id"]
    # The agent keeps serving.
    assert (await get(agent.port, "/health/live")).status == 200
    return response


@pytest.mark.parametrize("name", list(VECTORS))
async def test_malformed_request_refused_and_never_forwarded(main_agent, upstream, name):
    data, statuses = VECTORS[name]
    await assert_refused(main_agent, upstream, data, statuses, code=code_for_status(statuses[0]))


@pytest.mark.parametrize("name", [name for name in VECTORS if name.startswith("chunk-")])
async def test_bad_chunk_arriving_later_refused_and_the_app_never_gets_a_complete_body(main_agent, upstream, name):
    # The agent holds a body back until it is complete or 64 KiB arrived, so a small body with a
    # bad chunk arriving later never reaches the app at all; the client gets a 400 and a close.
    head, _, body = VECTORS[name][0].replace(b"POST /echo", b"POST /upload").partition(b"\r\n\r\n")
    await warm_pool(main_agent)
    upstream.reset_events()
    ex = await raw_exchange(main_agent.port, [head + b"\r\n\r\n" + b"5\r\nhello\r\n", body], gap_s=0.3, timeout_s=3)
    assert ex.closed
    assert [r.status for r in ex.responses()] == [400]
    await asyncio.sleep(0.3)
    assert upstream.events().get("upload_complete", 0) == 0
    assert upstream.events().get("upload_incomplete", 0) == 0


async def test_connect_refused_with_405(main_agent, upstream):
    await assert_refused(
        main_agent,
        upstream,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        (405,),
        code="METHOD_NOT_ALLOWED",
    )


async def test_connect_never_forwarded(main_agent, upstream):
    await warm_pool(main_agent)
    before = upstream.requests_served()
    ex = await raw_exchange(main_agent.port, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", timeout_s=3)
    assert ex.closed and ex.response().status in (400, 405)
    assert upstream.requests_served() == before


async def test_smuggled_request_after_cl_te_never_becomes_a_request(main_agent, upstream):
    # The classic CL.TE probe followed by a complete second request in the same packet.
    await warm_pool(main_agent)
    before = upstream.requests_served()
    data = (
        b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /echo/smuggled HTTP/1.1\r\n" + H + b"\r\n"
    )
    ex = await raw_exchange(main_agent.port, data, timeout_s=3)
    await asyncio.sleep(0.2)
    assert upstream.requests_served() == before
    assert [r.status for r in ex.responses()] == [400]


async def test_valid_request_after_a_bad_one_on_the_same_connection_is_not_served(main_agent, upstream):
    await warm_pool(main_agent)
    before = upstream.requests_served()
    ex = await raw_exchange(
        main_agent.port, b"GET /echo HTTP/1.1\r\n" + H + b"X: a\x00\r\n\r\nGET /echo HTTP/1.1\r\n" + H + b"\r\n", timeout_s=3
    )
    assert [r.status for r in ex.responses()] == [400]
    assert upstream.requests_served() == before


# --------------------------------------------------------------------------- slow clients
@pytest.mark.slow
async def test_slow_loris_heads_cut_at_header_timeout_while_others_are_served(main_agent, upstream):
    """200 connections sending one header byte per second; header_timeout_s = 2."""
    head = b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX-Slow: " + b"s" * 100
    closed_after: list[float] = []
    started = time.monotonic()

    async def loris() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", main_agent.port)
        try:
            for byte in head:
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    break
                try:
                    data = await asyncio.wait_for(reader.read(1024), 1.0)
                except TimeoutError:
                    continue
                except ConnectionError:
                    break
                if not data:
                    break
            closed_after.append(time.monotonic() - started)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    before = upstream.requests_served()
    lorises = [asyncio.create_task(loris()) for _ in range(200)]
    await asyncio.sleep(0.3)
    latencies = []
    served = 0
    while time.monotonic() - started < 4.0:
        t = time.monotonic()
        response = await get(main_agent.port, "/echo", timeout=2)
        latencies.append(time.monotonic() - t)
        assert response.status == 200
        served += 1
        await asyncio.sleep(0.05)
    _, pending = await asyncio.wait(lorises, timeout=3)
    for task in pending:
        task.cancel()
    assert not pending, f"{len(pending)} slow-loris connections still open after {time.monotonic() - started:.1f}s"
    assert len(closed_after) == 200
    assert max(closed_after) < 3.5, max(closed_after)  # 2 s header deadline + sweep period
    assert min(closed_after) > 1.5, min(closed_after)
    assert max(latencies) < 0.5, max(latencies)
    assert upstream.requests_served() == before + served  # no loris head reached the app


async def test_trickled_body_cut_by_min_rate(main_agent, upstream):
    """Content-Length 100000, 10 bytes/s: body_timeout_s = 1, min_body_rate_bytes_s = 1024."""
    upstream.reset_events()
    reader, writer = await asyncio.open_connection("127.0.0.1", main_agent.port)
    writer.write(b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n")
    started = time.monotonic()
    received = b""
    try:
        while time.monotonic() - started < 5:
            try:
                writer.write(b"b")
                await writer.drain()
            except ConnectionError:
                break
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            except ConnectionError:
                break
            if not data:
                break
            received += data
    finally:
        cut_after = time.monotonic() - started
        writer.close()
    assert 0.9 < cut_after < 2.5, cut_after
    if received:
        assert received.startswith(b"HTTP/1.1 408") or received.startswith(b"HTTP/1.1 400"), received[:100]
    await asyncio.sleep(0.5)
    # Under 64 KiB of body arrived: the app was never contacted, so no app connection was held.
    assert upstream.events().get("upload_incomplete", 0) == 0
    assert upstream.events().get("upload_complete", 0) == 0
    assert upstream.events().get("upload_complete", 0) == 0
    assert (await get(main_agent.port, "/echo")).status == 200


async def test_stalled_body_cut_by_body_timeout(main_agent, upstream):
    upstream.reset_events()
    data = b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n" + b"x" * 4000
    ex = await raw_exchange(main_agent.port, data, timeout_s=4)
    assert ex.closed
    assert 0.9 < ex.elapsed_s < 2.5, ex.elapsed_s
    await asyncio.sleep(0.3)
    assert upstream.events().get("upload_complete", 0) == 0


async def test_trickled_head_cut_by_header_timeout(main_agent):
    ex = await raw_exchange(
        main_agent.port,
        [bytes([b]) for b in b"GET /echo HTTP/1.1\r\nHost: test.local\r\nX-A: " + b"a" * 60],
        gap_s=0.1,
        timeout_s=5,
    )
    assert ex.closed
    assert ex.elapsed_s < 3.5, ex.elapsed_s


@pytest.mark.slow
async def test_idle_keep_alive_connection_closed_after_keepalive_timeout(main_agent):
    # keepalive_timeout_s = 5 in this agent: a connection idle after one response is closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", main_agent.port)
    writer.write(b"GET /echo HTTP/1.1\r\n" + H + b"\r\n")
    await writer.drain()
    first = await asyncio.wait_for(reader.read(65536), 3)
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    rest = await asyncio.wait_for(reader.read(65536), 8)
    assert rest == b""
    assert 4.5 < time.monotonic() - started < 6.5
    writer.close()


# --------------------------------------------------------------------------- vanishing clients
async def test_client_disconnect_mid_upload_aborts_the_upstream_request(main_agent, upstream):
    upstream.reset_events()
    _, writer = await asyncio.open_connection("127.0.0.1", main_agent.port)
    writer.write(b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 1000000\r\n\r\n" + b"u" * 300_000)
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.transport.abort()
    await async_wait_until(lambda: bool(upstream.events().get("upload_incomplete")), timeout_s=3)
    assert upstream.events().get("upload_incomplete") == 1, upstream.events()
    assert upstream.events().get("upload_complete", 0) == 0
    for _ in range(3):
        assert (await get(main_agent.port, "/echo")).status == 200


async def test_client_disconnect_mid_download_aborts_the_upstream_response(main_agent, upstream):
    upstream.reset_events()
    reader, writer = await asyncio.open_connection("127.0.0.1", main_agent.port)
    writer.write(b"GET /drip?n=400&interval_s=0.01 HTTP/1.1\r\n" + H + b"\r\n")
    await writer.drain()
    got = b""
    while len(got) < 8000:
        got += await asyncio.wait_for(reader.read(4096), 3)
    writer.transport.abort()
    await async_wait_until(lambda: bool(upstream.events().get("drip_disconnect")), timeout_s=3)
    assert upstream.events().get("drip_disconnect") == 1, upstream.events()
    assert upstream.events().get("drip_complete", 0) == 0
    for _ in range(3):
        assert (await get(main_agent.port, "/echo")).status == 200
    records = wait_for_log(main_agent, lambda r: r.get("path") == "/drip" and r.get("message") == "request completed")
    assert records and records[-1].get("aborted") is True


async def test_every_log_line_of_a_cut_body_request_has_request_and_trace_id(main_agent):
    rid = f"slow-body-{time.monotonic_ns()}"
    data = b"POST /upload HTTP/1.1\r\n" + H + b"X-Request-ID: " + rid.encode() + b"\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100
    await raw_exchange(main_agent.port, data, timeout_s=4)
    lines = wait_for_log(main_agent, lambda r: r.get("request_id") == rid and r.get("message") == "request completed")
    assert lines
    lines = [r for r in main_agent.log_records() if r.get("request_id") == rid]
    assert len(lines) >= 2
    missing = [r["message"] for r in lines if not r.get("trace_id")]
    assert not missing, missing
