"""The admin listener's own HTTP server (``agent.admin.http``) on a real socket: framing, keep-alive,
pipelining, limits and refusals answered with the agent's JSON error, shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from agent.admin import http
from agent.admin.http import MAX_BODY_BYTES, Request, Response
from tests.admin.admin_apps import UUID4, admin_app, make_config
from tests.support.admin_client import AdminClient, serve_admin


async def slow(request: Request) -> Response:
    await asyncio.sleep(0.3)
    return Response(200, b"slow done")


async def echo(request: Request) -> Response:
    return Response(200, request.body)


@pytest.fixture
async def served() -> AsyncIterator[AdminClient]:
    app = admin_app(make_config(), {"/slow": slow})
    app.put("/echo", echo)
    client = await serve_admin(app)
    yield client
    await client.close()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, read until the server closes (or 5 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    chunks = []
    try:
        async with asyncio.timeout(5.0):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
    except TimeoutError:
        pass
    writer.close()
    return b"".join(chunks)


def responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of responses framed by Content-Length."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if status == 100:
            found.append((status, fields, b""))
            data = rest
            continue
        length = int(fields.get("content-length", "0"))
        found.append((status, fields, rest[:length]))
        data = rest[length:]
    return found


def assert_json_error(status: int, fields: dict[str, str], body: bytes, expected: int, code: str) -> None:
    assert status == expected
    doc = json.loads(body)
    assert doc["error_code"] == code and UUID4.fullmatch(doc["error_id"])
    assert fields["x-error-id"] == doc["error_id"] and fields["x-request-id"] == doc["request_id"]
    assert fields["x-frame-options"] == "DENY" and fields["connection"] == "close"


@pytest.mark.parametrize(
    ("request_bytes", "expected", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET http://elsewhere/health HTTP/1.1\r\nHost: a\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "BAD_REQUEST"),
        (b"GET /health HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 20000 + b"\r\n\r\n", 431, "HEADER_TOO_LARGE"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "URI_TOO_LONG"),
    ],
    ids=["garbage", "cl-and-te", "absolute-form", "two-hosts", "head-too-large", "target-too-long"],
)
async def test_a_refused_request_gets_the_json_error_and_the_connection_closes(
    served: AdminClient, request_bytes: bytes, expected: int, code: str
) -> None:
    (answer,) = responses(await exchange(served.port, request_bytes))
    assert_json_error(*answer, expected, code)


async def test_a_body_over_the_limit_is_413(served: AdminClient) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    data = b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    (answer,) = responses(await exchange(served.port, data))
    assert_json_error(*answer, 413, "PAYLOAD_TOO_LARGE")


async def test_pipelined_requests_are_answered_in_order_on_one_connection(served: AdminClient) -> None:
    data = (
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
        b"PUT /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        b"GET /health/live HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    answers = responses(await exchange(served.port, data))
    assert [(status, body[:9]) for status, _, body in answers] == [(200, b"slow done"), (200, b"abcde"), (200, b'{"status"')]
    assert "connection" not in answers[0][1] and answers[2][1]["connection"] == "close"


async def test_head_has_the_length_of_get_and_no_body(served: AdminClient) -> None:
    head_answer = await exchange(served.port, b"HEAD /status/app.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    (get,) = responses(await exchange(served.port, b"GET /status/app.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
    assert head_answer.startswith(b"HTTP/1.1 200 OK\r\n") and head_answer.endswith(b"\r\n\r\n")  # no body
    assert b"\r\nContent-Length: %d\r\n" % len(get[2]) in head_answer and get[0] == 200 and get[2]


async def test_expect_100_continue_is_answered_before_the_body(served: AdminClient) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(b"PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    ((status, _, body),) = responses(rest)
    assert (status, body) == (200, b"hello")


async def test_an_upgrade_request_is_answered_as_http_and_the_connection_ends(served: AdminClient) -> None:
    data = b"GET /health/live HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello"
    (answer,) = responses(await exchange(served.port, data))
    assert answer[0] == 200 and answer[1]["connection"] == "close"


async def test_http_1_0_without_keep_alive_is_closed_after_the_answer(served: AdminClient) -> None:
    (answer,) = responses(await exchange(served.port, b"GET /health/live HTTP/1.0\r\n\r\n"))
    assert answer[0] == 200 and answer[1]["connection"] == "close"


async def test_http_1_0_keep_alive_is_kept_and_said(served: AdminClient) -> None:
    data = b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /health/live HTTP/1.0\r\n\r\n"
    first, second = responses(await exchange(served.port, data))
    assert (first[0], first[1]["connection"]) == (200, "keep-alive")
    assert (second[0], second[1]["connection"]) == (200, "close")


async def test_shutdown_lets_a_running_request_finish_and_closes_idle_connections(served: AdminClient) -> None:
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", served.port)
    idle_writer.write(b"GET /health/live HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.wait_for(idle_reader.readuntil(b"}"), 5)  # answered; the connection stays open
    busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", served.port)
    busy_writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
    await asyncio.sleep(0.05)
    await served.server.close(5.0)
    ((status, fields, body),) = responses(await asyncio.wait_for(busy_reader.read(), 5))
    assert (status, body, fields["connection"]) == (200, b"slow done", "close")
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # closed, not left hanging
    idle_writer.close()
    busy_writer.close()


async def test_deadlines_close_a_slow_head_a_stalled_body_and_an_idle_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEAD_TIMEOUT_S", "BODY_TIMEOUT_S", "KEEPALIVE_TIMEOUT_S"):
        monkeypatch.setattr(http, name, 0.4)
    monkeypatch.setattr(http, "SWEEP_PERIOD_S", 0.05)
    app = admin_app(make_config())
    app.put("/echo", echo)
    client = await serve_admin(app)
    try:
        started = asyncio.get_running_loop().time()
        streams = [await asyncio.open_connection("127.0.0.1", client.port) for _ in range(3)]
        slow_head, stalled_body, idle = (reader for reader, _ in streams)
        streams[0][1].write(b"GET /health/live HTTP/1.1\r\nHost: a\r\n")  # never finished
        streams[1][1].write(b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")  # 7 bytes short
        streams[2][1].write(b"GET /health/live HTTP/1.1\r\nHost: a\r\n\r\n")  # answered, then idle
        assert await asyncio.wait_for(slow_head.read(), 5) == b""
        assert await asyncio.wait_for(stalled_body.read(), 5) == b""
        answered = await asyncio.wait_for(idle.read(), 5)
        assert answered.startswith(b"HTTP/1.1 200 OK\r\n")  # the answer came, then the close
        assert asyncio.get_running_loop().time() - started < 3
        assert not client.server.connections
        for _, writer in streams:
            writer.close()
    finally:
        await client.close()
