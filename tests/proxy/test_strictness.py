"""Differential test: the main listener is at least as strict as aiohttp's C parser.

Every malformed or smuggling request from the research vector list is sent as raw bytes to a
plain aiohttp server and to the agent. Whatever aiohttp refuses, the agent must refuse too, with
its JSON error, and the upstream app behind the agent must never see the request.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from agent.config import build_config
from tests.support.inprocess import in_process_agent

H = b"Host: a\r\n"
VECTORS: dict[str, bytes] = {
    "cl+te": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "te.cl": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "chunked123": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked123\r\n\r\n",
    "te gzip": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
    "te gzip, chunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te chunked, chunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "te twice": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te space before colon": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te tab before name": b"POST / HTTP/1.1\r\n" + H + b"\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te vertical tab": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
    "te on http/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "dup cl same": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    "dup cl different": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    "cl list": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 1\r\n\r\nx",
    "cl plus": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +1\r\n\r\nx",
    "cl minus": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nx",
    "cl hex": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\nx",
    "cl space inside": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 0\r\n\r\nx",
    "cl superscript": "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \u00b9\r\n\r\nx".encode(),
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n",
    "bare LF": b"GET / HTTP/1.1\nHost: a\n\n",
    "bare LF in headers": b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
    "CR in value": b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n",
    "NUL in value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n",
    "CTL in value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n",
    "0xff in name": b"GET / HTTP/1.1\r\n" + H + b"\xffoo: b\r\n\r\n",
    "space in name": b"GET / HTTP/1.1\r\n" + H + b"Foo Bar: b\r\n\r\n",
    "chunk size Z": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nZ\r\n\r\n",
    "chunk size 0_2e": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0_2e\r\n\r\n",
    "chunk size overflow": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 21 + b"\r\n",
    "LF in chunk extension": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n",
    "chunk longer than size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n1\r\nxx\r\n0\r\n\r\n",
    "bad trailer": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX Y\r\n\r\n",
    "dup host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "no host on 1.1": b"GET / HTTP/1.1\r\n\r\n",
    "HTTP/1.32": b"GET / HTTP/1.32\r\n" + H + b"\r\n",
    "HTTP/2.0 request line": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    "bad method": b"G@T / HTTP/1.1\r\n" + H + b"\r\n",
    "LF in request line": b"GET /\n HTTP/1.1\r\n" + H + b"\r\n",
    "9 KB header line": b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 9000 + b"\r\n\r\n",
    "9 KB request target": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "200 headers": b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
}


async def exchange(port: int, payload: bytes) -> tuple[int | None, bytes]:
    """(status of the first response or None, everything read until close or 1 s of silence)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 1.0)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else None
    return status, data


def refused(status: int | None) -> bool:
    """aiohttp's refusal: an error status, or a close without an answer (its HTTP/2.0 request line)."""
    return status is None or status >= 400


@pytest.fixture
async def reference_port():
    """A plain aiohttp server with its C parser: the strictness baseline."""

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


@pytest.fixture
async def counting_upstream():
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        await request.read()
        seen.append(f"{request.method} {request.raw_path}")
        return web.Response(text="upstream")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield site._server.sockets[0].getsockname()[1], seen  # type: ignore[union-attr]
    await runner.cleanup()


async def test_agent_refuses_everything_aiohttp_refuses(reference_port, counting_upstream):
    upstream_port, seen = counting_upstream
    config = build_config(
        {
            "upstream": {"url": f"http://127.0.0.1:{upstream_port}"},
            "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
        },
        {},
        "test",
    )
    compared = 0
    async with in_process_agent(config) as agent:
        agent_port = int(agent.main_url.rsplit(":", 1)[1])
        for name, payload in VECTORS.items():
            before = list(seen)
            ref_status, _ = await exchange(reference_port, payload)
            agent_status, agent_data = await exchange(agent_port, payload)
            if refused(ref_status):
                compared += 1
                # Refusing is answering: a silent close or a hang (status None) is not a refusal.
                assert agent_status is not None and 400 <= agent_status < 500, (
                    f"{name}: aiohttp refused ({ref_status}) but the agent answered {agent_status}"
                )
                assert seen == before, f"{name}: reached the upstream: {seen[len(before) :]}"
            # The agent is stricter than aiohttp on a few (TE on HTTP/1.0, "gzip, chunked"); its
            # refusals all carry its JSON error and close the connection.
            if agent_status is not None and agent_status >= 400:
                head, _, body = agent_data.partition(b"\r\n\r\n")
                assert b"\r\nX-Content-Type-Options: nosniff\r\n" in head, name
                assert b"\r\nConnection: close" in head + b"\r\n", name
                assert json.loads(body)["error_id"], name
    assert compared, "aiohttp refused none of the vectors: nothing was compared"


async def test_a_valid_request_still_works_after_the_vectors(reference_port, counting_upstream):
    upstream_port, seen = counting_upstream
    config = build_config(
        {"upstream": {"url": f"http://127.0.0.1:{upstream_port}"}, "checks": {"disk": {"enabled": False}}}, {}, "t"
    )
    async with in_process_agent(config) as agent:
        port = int(agent.main_url.rsplit(":", 1)[1])
        for payload in VECTORS.values():
            await exchange(port, payload)
        status, data = await exchange(port, b"GET /ok?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert status == 200 and data.endswith(b"upstream")
        assert seen[-1] == "GET /ok?x=1"
