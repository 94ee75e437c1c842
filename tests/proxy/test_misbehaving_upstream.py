"""An upstream that misbehaves (reliability-anchors table B), written as a raw asyncio server.

Truncated bodies must reach the client as truncated (never a clean short response), malformed
or oversized response heads become the agent's 502 (never a 400 passed on), keep-alive
connections the app closes are recovered from without a spurious 502 (and a POST that may
have reached the app is never retried), and a client that goes away takes its upstream
connection with it.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.polling import async_wait_until
from tests.support.rawhttp import get, raw_exchange, request
from tests.support.rawupstream import RawConnection, RawRequest
from tests.support.reports import wait_for_log
from tests.support.responses import SECURITY_HEADERS, UUID4


def route(raw_upstream, path: str):
    def register(handler):
        raw_upstream.routes[path] = handler
        return handler

    return register


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


# --------------------------------------------------------------------------- truncated bodies
async def test_upstream_closes_mid_body_with_content_length(raw_agent, raw_upstream):
    @route(raw_upstream, "/trunc-cl")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + b"0123456789")
        await asyncio.sleep(0.1)
        return False  # close

    ex = await raw_exchange(raw_agent.port, request("GET", "/trunc-cl"), timeout_s=3)
    assert ex.closed, "client connection left open after a truncated upstream body"
    (response,) = ex.responses()
    assert response.status == 200
    assert response.header("Content-Length") == "100"
    assert response.body == b"0123456789"
    assert not response.complete  # fewer bytes than announced, then the close
    records = wait_for_log(raw_agent, lambda r: r.get("path") == "/trunc-cl" and r.get("message") == "request completed")
    assert records and records[0].get("aborted") is True


async def test_upstream_closes_mid_body_chunked(raw_agent, raw_upstream):
    @route(raw_upstream, "/trunc-chunked")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await asyncio.sleep(0.1)
        return False

    ex = await raw_exchange(raw_agent.port, request("GET", "/trunc-chunked"), timeout_s=3)
    assert ex.closed
    (response,) = ex.responses()
    assert response.status == 200 and response.chunked
    assert response.body == b"hello"
    assert not response.complete, f"a terminating chunk was invented: {ex.data!r}"
    assert b"0\r\n\r\n" not in ex.data.split(b"\r\n\r\n", 1)[1]


async def test_upstream_stalls_mid_body_cut_after_read_timeout(raw_agent, raw_upstream):
    @route(raw_upstream, "/stall")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await asyncio.sleep(5)
        return False

    ex = await raw_exchange(raw_agent.port, request("GET", "/stall"), timeout_s=5)
    assert ex.closed
    assert ex.elapsed_s < 3.0  # read_timeout_s = 1.5
    (response,) = ex.responses()
    assert response.status == 200 and not response.complete


async def test_close_delimited_upstream_body_is_reframed_and_complete(raw_agent, raw_upstream):
    @route(raw_upstream, "/eof-body")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n" + b"e" * 5000)
        return False

    data = request("GET", "/eof-body") + request("GET", "/after")
    ex = await raw_exchange(raw_agent.port, data, until_responses=2, timeout_s=3)
    first, second = ex.responses()
    assert first.status == 200 and first.body == b"e" * 5000 and first.complete
    assert second.status == 200


# --------------------------------------------------------------------------- malformed responses
MALFORMED = {
    "garbage": b"garbage\r\n\r\n",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n",
    "bad-status-code": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "nul-in-header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "cr-in-header": b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 2\r\n\r\nok",
    "header-70kb": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-Big%d: %s\r\n" % (i, b"v" * 7000) for i in range(10))
    + b"Content-Length: 2\r\n\r\nok",
    "200-headers": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"Content-Length: 2\r\n\r\nok",
    "cl-and-te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "duplicate-cl-different": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "bad-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    "closed-before-head": b"",
    "partial-head-then-close": b"HTTP/1.1 200 OK\r\nContent-Le",
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_upstream_response_is_502(raw_agent, raw_upstream, name):
    path = f"/malformed-{name}"

    @route(raw_upstream, path)
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        if MALFORMED[name]:
            await conn.send(MALFORMED[name])
        await asyncio.sleep(0.05)
        return False

    response = await get(raw_agent.port, path, timeout=4)
    assert response.status == 502, (response.status, response.body[:200])
    body = response.json()
    assert body["error_code"] == "UPSTREAM_UNAVAILABLE" and UUID4.match(body["error_id"])
    assert all(h in response.names() for h in SECURITY_HEADERS)
    assert b"garbage" not in response.body and b"SSH" not in response.body
    assert wait_for_log(raw_agent, lambda r: r.get("error_id") == body["error_id"])


async def test_bad_chunk_from_upstream_never_looks_like_a_complete_response(raw_agent, raw_upstream):
    # Head and a bad first chunk in one packet. The agent may answer 502 (nothing sent yet) or
    # cut the connection; a complete response is never acceptable.
    @route(raw_upstream, "/bad-chunk")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nok\r\n0\r\n\r\n")
        await asyncio.sleep(0.1)
        return False

    ex = await raw_exchange(raw_agent.port, request("GET", "/bad-chunk"), timeout_s=3)
    assert ex.closed
    responses = ex.responses()
    assert responses == [] or responses[0].status == 502 or not responses[0].complete, ex.data[:300]


async def test_upstream_1xx_never_forwarded(raw_agent, raw_upstream):
    @route(raw_upstream, "/early-hints")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await asyncio.sleep(0.05)
        await conn.send(ok(b"final"))
        return True

    ex = await raw_exchange(raw_agent.port, request("GET", "/early-hints"), until_responses=1, timeout_s=3)
    responses = ex.responses()
    assert [r.status for r in responses] == [200]
    assert responses[0].body == b"final"


async def test_upstream_legitimate_400_is_passed_on_as_the_apps_own(raw_agent, raw_upstream):
    # The other side of "never pass a 400 on": a real 400 from the app is the app's answer.
    @route(raw_upstream, "/app-400")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        body = b'{"detail": "bad field"}'
        await conn.send(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        return True

    response = await get(raw_agent.port, "/app-400")
    assert response.status == 400
    assert response.json()["detail"] == "bad field"


async def test_extra_bytes_in_the_same_packet_after_a_response(raw_agent, raw_upstream):
    @route(raw_upstream, "/extra")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(ok(b"ok") + b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        await asyncio.sleep(0.2)
        return True

    first = await get(raw_agent.port, "/extra")
    assert first.status == 200 and first.body == b"ok"


async def test_extra_bytes_after_a_response_never_reach_a_later_client(raw_agent, raw_upstream):
    @route(raw_upstream, "/extra-later")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(ok(b"ok"))
        await asyncio.sleep(0.1)
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        await asyncio.sleep(0.2)
        return True

    first = await get(raw_agent.port, "/extra-later")
    assert first.status == 200 and first.body == b"ok"
    await asyncio.sleep(0.2)
    for _ in range(3):
        later = await get(raw_agent.port, "/plain")
        assert later.status == 200 and later.body == b'{"ok": true}'

    # and even when the forged bytes come in the same packet, no later client ever sees them
    @route(raw_upstream, "/extra-same")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(ok(b"ok") + b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        await asyncio.sleep(0.2)
        return True

    await raw_exchange(raw_agent.port, request("GET", "/extra-same"), timeout_s=1)
    for _ in range(3):
        later = await get(raw_agent.port, "/plain")
        assert later.status == 200 and later.body == b'{"ok": true}'


async def test_head_response_with_a_stray_body_does_not_desync_the_pool(raw_agent, raw_upstream):
    @route(raw_upstream, "/head-body")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstray!")  # a buggy app: body on HEAD
        return True

    response = await get(raw_agent.port, "/head-body", method="HEAD")
    assert response.status == 200 and response.header("Content-Length") == "6"
    for _ in range(3):
        later = await get(raw_agent.port, "/plain")
        assert later.status == 200 and later.body == b'{"ok": true}', later.body


async def test_stray_head_body_arriving_later_never_breaks_the_next_request(raw_agent, raw_upstream):
    # Apps do send bodies on HEAD (aiohttp's StreamResponse.write does). Here the body follows the
    # head by 50 ms; the next request (pipelined by the client) must still get its own answer.
    @route(raw_upstream, "/head-body-later")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        await asyncio.sleep(0.05)
        await conn.send(b"stray!")
        return True

    data = request("HEAD", "/head-body-later") + request("GET", "/next-after-head")
    ex = await raw_exchange(raw_agent.port, data, until_responses=2, head_for=[True, False], timeout_s=3)
    head, after = ex.responses()
    assert head.status == 200 and head.body == b""
    assert after.status == 200 and after.body == b'{"ok": true}', after.body


# --------------------------------------------------------------------------- keep-alive to the app
async def test_upstream_connections_reused(raw_agent, raw_upstream):
    await get(raw_agent.port, "/warm")
    before = raw_upstream.connections_opened
    for i in range(20):
        assert (await get(raw_agent.port, f"/reuse?{i}")).status == 200
    assert raw_upstream.connections_opened - before <= 1
    conns = {c for c, r in raw_upstream.requests if r.path.startswith("/reuse")}
    assert len(conns) == 1


async def test_idle_connection_closed_by_the_app_is_not_a_502(raw_agent, raw_upstream):
    @route(raw_upstream, "/then-idle-close")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(ok())
        await asyncio.sleep(0.2)  # the app's keep-alive timeout, much shorter than the agent's pool idle time
        return False

    for method in ("GET", "POST", "GET", "POST"):
        assert (await get(raw_agent.port, "/then-idle-close")).status == 200
        await asyncio.sleep(0.5)
        response = await get(raw_agent.port, "/next", method=method, body=b"data" if method == "POST" else b"")
        assert response.status == 200, (method, response.status, response.body)


async def test_app_closing_a_reused_connection_as_a_get_arrives_is_retried(raw_agent, raw_upstream):
    @route(raw_upstream, "/arm")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(ok())
        conn.armed = True  # the next request on this connection is dropped, unanswered
        return True

    assert (await get(raw_agent.port, "/arm")).status == 200
    response = await get(raw_agent.port, "/victim-get")
    assert response.status == 200
    assert [e for e in raw_upstream.events if "victim-get" in e] == ["dropped GET /victim-get"]
    assert len(raw_upstream.requests_to("/victim-get")) == 2  # once dropped, once answered on a new connection


async def test_app_closing_a_reused_connection_as_a_post_arrives_is_never_retried(raw_agent, raw_upstream):
    @route(raw_upstream, "/arm2")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        await conn.send(ok())
        conn.armed = True
        return True

    assert (await get(raw_agent.port, "/arm2")).status == 200
    response = await get(raw_agent.port, "/victim-post", method="POST", body=b'{"charge": 100}')
    assert response.status == 502
    assert response.json()["error_code"] == "UPSTREAM_UNAVAILABLE"
    await asyncio.sleep(0.3)
    assert len(raw_upstream.requests_to("/victim-post")) == 1  # sent once, never again


async def test_client_disconnect_mid_response_closes_the_upstream_connection(raw_agent, raw_upstream):
    state = {"conn": None, "wrote": 0}

    @route(raw_upstream, "/endless")
    async def _(conn: RawConnection, req: RawRequest) -> bool:
        state["conn"] = conn.id
        await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(200):
            await conn.send(b"400\r\n" + b"z" * 1024 + b"\r\n")
            state["wrote"] += 1
            await asyncio.sleep(0.02)
        await conn.send(b"0\r\n\r\n")
        return True

    reader, writer = await asyncio.open_connection("127.0.0.1", raw_agent.port)
    writer.write(request("GET", "/endless"))
    await writer.drain()
    got = b""
    while len(got) < 4096:
        got += await asyncio.wait_for(reader.read(4096), 3)
    writer.transport.abort()
    assert await async_wait_until(lambda: any(c == state["conn"] for c, _ in raw_upstream.connections_closed), timeout_s=3), (
        "the upstream connection stayed open after the client left"
    )
    assert state["wrote"] < 150
    # The agent keeps serving, on a different upstream connection.
    response = await get(raw_agent.port, "/after-disconnect")
    assert response.status == 200
    ((conn_id, _),) = raw_upstream.requests_to("/after-disconnect")
    assert conn_id != state["conn"]
