"""HTTP/1.x client behaviours through the agent: HTTP/1.0 clients, pipelining, Expect:
100-continue answered by the agent, keep-alive reuse."""

from __future__ import annotations

import asyncio
import json

from tests.support.rawhttp import get, raw_exchange, request

H = b"Host: test.local\r\n"


# --------------------------------------------------------------------------- HTTP/1.0
async def test_http10_request_without_host_served_and_closed(main_agent):
    ex = await raw_exchange(main_agent.port, b"GET /echo/ten HTTP/1.0\r\n\r\n", timeout_s=3)
    response = ex.response()
    assert response.status == 200
    assert response.json()["path"] == "/echo/ten"
    assert ex.closed  # no keep-alive asked for: the agent closes


async def test_http10_without_host_never_gets_an_empty_forwarded_host(main_agent):
    ex = await raw_exchange(main_agent.port, b"GET /echo HTTP/1.0\r\n\r\n", timeout_s=3)
    headers = {n.lower(): v for n, v in ex.response().json()["headers"]}
    assert headers.get("x-forwarded-host", "absent") != ""


async def test_http10_post_with_body(main_agent):
    ex = await raw_exchange(main_agent.port, b"POST /upload HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello", timeout_s=3)
    response = ex.response()
    assert response.status == 200 and response.json()["bytes"] == 5
    assert ex.closed


async def test_http10_content_length_response_passed_as_is(main_agent):
    ex = await raw_exchange(main_agent.port, b"GET /bytes/3000 HTTP/1.0\r\n\r\n", timeout_s=3)
    response = ex.response()
    assert response.status == 200 and response.body == b"x" * 3000
    assert response.header("Transfer-Encoding") is None


async def test_http10_client_never_gets_chunked_encoding(main_agent):
    # RFC 9112 §6.1: chunked must not be sent to an HTTP/1.0 recipient; close-delimit instead.
    ex = await raw_exchange(main_agent.port, b"GET /chunked/5000 HTTP/1.0\r\n\r\n", timeout_s=3)
    assert ex.closed
    head, _, body = ex.data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower(), head
    assert body == b"y" * 5000


async def test_http10_head(main_agent):
    ex = await raw_exchange(main_agent.port, b"HEAD /echo HTTP/1.0\r\n\r\n", timeout_s=3, head_for=[True])
    response = ex.response()
    assert response.status == 200 and response.body == b""
    assert ex.closed


# --------------------------------------------------------------------------- pipelining
async def test_three_pipelined_gets_answered_in_order(main_agent):
    data = b"".join(request("GET", f"/echo/p{i}") for i in range(1, 4))
    ex = await raw_exchange(main_agent.port, data, until_responses=3, timeout_s=5)
    responses = ex.responses()
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.json()["path"] for r in responses] == ["/echo/p1", "/echo/p2", "/echo/p3"]
    assert len({r.header("X-Request-ID") for r in responses}) == 3


async def test_pipelined_order_kept_behind_a_slow_request_and_a_local_one(main_agent):
    data = (
        request("GET", "/slow?delay_s=0.5")
        + request("GET", "/health/live")
        + request("POST", "/echo/body", body=b"0123456789")
        + request("GET", "/echo/last")
    )
    ex = await raw_exchange(main_agent.port, data, until_responses=4, timeout_s=5)
    responses = ex.responses()
    assert [r.status for r in responses] == [200, 200, 200, 200]
    assert responses[0].json() == {"slept": 0.5}
    assert responses[1].json()["status"] == "alive"
    assert responses[2].json()["path"] == "/echo/body" and responses[2].json()["body_len"] == 10
    assert responses[3].json()["path"] == "/echo/last"


async def test_pipelined_bad_request_answers_earlier_ones_then_closes(main_agent, upstream):
    before = upstream.requests_served()
    data = request("GET", "/echo/ok") + b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + request("GET", "/echo/never")
    ex = await raw_exchange(main_agent.port, data, timeout_s=3)
    assert ex.closed
    responses = ex.responses()
    assert [r.status for r in responses] == [200, 400]
    assert responses[0].json()["path"] == "/echo/ok"
    assert upstream.requests_served() == before + 1


async def test_many_pipelined_requests(main_agent):
    data = b"".join(request("GET", f"/echo/n{i}") for i in range(50))
    ex = await raw_exchange(main_agent.port, data, until_responses=50, timeout_s=10)
    responses = ex.responses()
    assert [r.json()["path"] for r in responses] == [f"/echo/n{i}" for i in range(50)]


# --------------------------------------------------------------------------- Expect: 100-continue
async def test_expect_100_continue_answered_by_the_agent(main_agent):
    reader, writer = await asyncio.open_connection("127.0.0.1", main_agent.port)
    try:
        writer.write(b"POST /echo/expect HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        await writer.drain()
        interim = await asyncio.wait_for(reader.read(65536), 2)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        await writer.drain()
        data = b""
        while b"}" not in data:
            data += await asyncio.wait_for(reader.read(65536), 3)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        seen = json.loads(body)
        assert seen["body_len"] == 5
        assert "expect" not in [n.lower() for n, _ in seen["headers"]]  # the app never sees the expectation
    finally:
        writer.close()


async def test_expect_100_continue_refused_without_100_when_too_big(main_agent, upstream):
    before = upstream.requests_served()
    ex = await raw_exchange(
        main_agent.port,
        b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n",
        timeout_s=3,
    )
    assert not ex.data.startswith(b"HTTP/1.1 100")
    assert ex.response().status in (400, 413)  # 413 intended; see test_agent_errors for the 400
    assert ex.closed
    assert upstream.requests_served() == before


async def test_expect_on_http10_gets_no_100(main_agent):
    ex = await raw_exchange(
        main_agent.port, b"POST /upload HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nab", timeout_s=3
    )
    assert not ex.data.startswith(b"HTTP/1.1 100")
    assert ex.response().status == 200


# --------------------------------------------------------------------------- keep-alive
async def test_keep_alive_many_requests_on_one_connection(main_agent):
    reader, writer = await asyncio.open_connection("127.0.0.1", main_agent.port)
    try:
        for i in range(200):
            writer.write(request("GET", f"/echo/k{i}") if i % 2 else request("GET", "/health/live"))
            await writer.drain()
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
                piece = await asyncio.wait_for(reader.read(65536), 3)
                assert piece, f"connection closed at request {i}"
                data += piece
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            assert b"\r\nConnection: close" not in data.partition(b"\r\n\r\n")[0]
    finally:
        writer.close()


def _length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


async def test_connection_close_from_the_client_honoured(main_agent):
    ex = await raw_exchange(
        main_agent.port, request("GET", "/echo", headers=[("Connection", "close")]) + request("GET", "/echo/2"), timeout_s=3
    )
    assert ex.closed
    responses = ex.responses()
    assert len(responses) == 1 and responses[0].header("Connection") == "close"


async def test_unknown_method_forwarded(main_agent):
    response = await get(main_agent.port, "/echo", method="PROPFIND")
    assert response.status == 200 and response.json()["method"] == "PROPFIND"
