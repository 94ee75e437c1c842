"""The http check's own HTTP/1.1 client against raw servers: reuse, stale connections, framing, bad answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.checks.base import Status, run_check
from agent.checks.http import MAX_BODY_BYTES, HttpProbe
from agent.secrets import Redactor

REDACT = Redactor([])
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

Answer = Callable[[int], bytes]  # request number on the connection -> what the server writes


class RawServer:
    """Answers each request head with ``answer(n)``; counts connections and keeps the heads."""

    def __init__(self, answer: Answer, *, close_after: int | None = None) -> None:
        self.answer = answer
        self.close_after = close_after
        self.connections = 0
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                n += 1
                writer.write(self.answer(n))
                await writer.drain()
                if self.close_after is not None and n >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[tuple[RawServer, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer, **kwargs: object) -> tuple[RawServer, str]:
        raw = RawServer(answer, **kwargs)  # type: ignore[arg-type]
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        servers.append(server)
        return raw, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/healthz?deep=1"

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


async def check(probe: HttpProbe) -> tuple[Status, str | None]:
    result = await run_check(probe.check, 2.0, REDACT)
    return result.status, result.message


async def checks(url: str, times: int, *, pause_s: float = 0.0) -> list[tuple[Status, str | None]]:
    """``times`` checks by one probe (``pause_s`` apart), then the probe closed."""
    probe = HttpProbe(url, ((200, 299),))
    results = []
    try:
        for _ in range(times):
            results.append(await check(probe))
            await asyncio.sleep(pause_s)
    finally:
        await probe.close()
    return results


async def test_one_connection_carries_every_check_and_the_request_is_plain(serve) -> None:
    raw, url = await serve(lambda n: OK)
    assert await checks(url, 3) == [(Status.PASS, None)] * 3
    assert raw.connections == 1
    assert raw.heads[0].startswith(b"GET /healthz?deep=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"User-Agent: sidecar-agent-check\r\n" in raw.heads[0]


async def test_a_connection_the_server_closed_is_replaced_without_a_failure(serve) -> None:
    raw, url = await serve(lambda n: OK, close_after=1)
    # 50 ms apart: the server's FIN arrives while the connection is idle
    assert [status for status, _ in await checks(url, 3, pause_s=0.05)] == [Status.PASS] * 3
    assert raw.connections == 3


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", True),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\n\r\nbody until the close", False),
    ],
)
async def test_framings_pass_and_only_a_whole_keep_alive_response_keeps_the_connection(serve, answer, reused) -> None:
    raw, url = await serve(lambda n: answer, close_after=1 if not reused else None)
    assert [status for status, _ in await checks(url, 2)] == [Status.PASS] * 2
    assert raw.connections == (1 if reused else 2)


async def test_a_large_body_is_not_read_to_its_end_and_the_connection_is_not_reused(serve) -> None:
    size = 4 * MAX_BODY_BYTES
    raw, url = await serve(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
    assert [status for status, _ in await checks(url, 2)] == [Status.PASS] * 2
    assert raw.connections == 2


async def test_unexpected_status_and_redirects_not_followed(serve) -> None:
    raw, url = await serve(lambda n: b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")
    assert await checks(url, 1) == [(Status.FAIL, "unexpected status 302")]
    assert len(raw.heads) == 1


async def test_garbage_and_silence_fail_with_a_reason(serve) -> None:
    _, url = await serve(lambda n: b"SSH-2.0-OpenSSH_9.2\r\n")
    [(status, message)] = await checks(url, 1)
    assert status is Status.FAIL and message is not None and "invalid HTTP response" in message
    _, url = await serve(lambda n: b"", close_after=1)
    [(status, message)] = await checks(url, 1)
    assert status is Status.FAIL and message is not None and "closed before a response" in message


async def test_unix_socket(tmp_path: Path) -> None:
    raw = RawServer(lambda n: OK)
    path = str(tmp_path / "app.sock")
    server = await asyncio.start_unix_server(raw.handle, path)
    probe = HttpProbe("http://localhost/health", ((200, 299),), unix_socket=path)
    try:
        assert await check(probe) == (Status.PASS, None)
    finally:
        await probe.close()
        server.close()
    assert raw.heads[0].startswith(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
