"""Bodies stream both ways without buffering, and the upstream pool is bounded and reused.

The 256 MiB transfers watch the agent's RSS (psutil on its pid) while the bytes flow: flat
memory means the agent holds a window, never the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator

import pytest

from tests.support.agent import AgentProcess, proxy_config
from tests.support.memory import RssSampler
from tests.support.rawhttp import chunked, get
from tests.support.responses import parse_head
from tests.support.upstream import UpstreamProcess

MIB = 1024 * 1024
SIZE = 256 * MIB
MAX_CONNECTIONS = 2
RSS_GROWTH_LIMIT = 48 * MIB  # far below the 256 MiB a buffering proxy would need


@pytest.fixture(scope="module")
def stream_agent(upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = proxy_config(
        upstream.url,
        proxy={"max_body_bytes": 512 * MIB},
        upstream={"max_connections": MAX_CONNECTIONS, "connect_timeout_s": 3.0},
    )
    agent = AgentProcess(tmp_path_factory.mktemp("stream"), config).start()
    yield agent
    agent.stop()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = await asyncio.wait_for(reader.read(65536), 10)
        assert piece, f"connection closed before the head: {data!r}"
        data += piece
    status, _, _, headers, used = parse_head(data)  # type: ignore[misc]
    return status, {n.lower(): v for n, v in headers}, data[used:]


async def warm_up(agent: AgentProcess) -> None:
    for _ in range(3):
        assert (await get(agent.port, "/bytes/100000")).status == 200


@pytest.mark.slow
async def test_256_mib_download_streams_with_flat_memory(stream_agent):
    await warm_up(stream_agent)
    with RssSampler(stream_agent.process.pid) as rss:
        reader, writer = await asyncio.open_connection("127.0.0.1", stream_agent.port, limit=4 * MIB)
        writer.write(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % SIZE)
        started = time.monotonic()
        status, headers, first = await read_head(reader)
        assert status == 200 and headers["content-length"] == str(SIZE)
        received = len(first)
        paused = False
        while received < SIZE:
            if not paused and received > 32 * MIB:
                # A client that stops reading: backpressure must stop the agent from buffering.
                paused = True
                await asyncio.sleep(1.0)
            piece = await asyncio.wait_for(reader.read(4 * MIB), 10)
            assert piece, f"closed after {received} bytes"
            assert piece.count(b"x") == len(piece)
            received += len(piece)
        elapsed = time.monotonic() - started
        writer.close()
    assert received == SIZE
    assert rss.growth < RSS_GROWTH_LIMIT, f"agent RSS grew {rss.growth / MIB:.1f} MiB"
    assert elapsed < 15, elapsed


@pytest.mark.slow
async def test_256_mib_upload_streams_with_flat_memory(stream_agent, upstream):
    await warm_up(stream_agent)
    block = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha256()
    with RssSampler(stream_agent.process.pid) as rss:
        reader, writer = await asyncio.open_connection("127.0.0.1", stream_agent.port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % SIZE)
        started = time.monotonic()
        for _ in range(SIZE // len(block)):
            writer.write(block)
            digest.update(block)
            await writer.drain()
        status, headers, rest = await read_head(reader)
        body = rest
        while len(body) < int(headers["content-length"]):
            body += await asyncio.wait_for(reader.read(65536), 10)
        elapsed = time.monotonic() - started
        writer.close()
    assert status == 200, body[:300]
    seen = json.loads(body)
    assert seen["bytes"] == SIZE and seen["sha256"] == digest.hexdigest()
    assert rss.growth < RSS_GROWTH_LIMIT, f"agent RSS grew {rss.growth / MIB:.1f} MiB"
    assert elapsed < 15, elapsed


@pytest.mark.slow
async def test_64_mib_chunked_upload_and_chunked_download(stream_agent):
    size = 64 * MIB
    with RssSampler(stream_agent.process.pid) as rss:
        reader, writer = await asyncio.open_connection("127.0.0.1", stream_agent.port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = b"c" * MIB
        for _ in range(size // MIB):
            writer.write(b"%x\r\n%s\r\n" % (len(block), block))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        status, headers, rest = await read_head(reader)
        while len(rest) < int(headers["content-length"]):
            rest += await asyncio.wait_for(reader.read(65536), 10)
        seen = json.loads(rest)
        assert status == 200 and seen["bytes"] == size and seen["chunked"] is True
        # Same connection: a chunked download of the same size.
        writer.write(b"GET /chunked/%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        status, headers, rest = await read_head(reader)
        assert status == 200 and headers.get("transfer-encoding") == "chunked"
        total = 0
        buf = rest
        while True:
            while b"\r\n" not in buf:
                buf += await asyncio.wait_for(reader.read(4 * MIB), 10)
            line, _, buf = buf.partition(b"\r\n")
            n = int(line, 16)
            while len(buf) < n + 2:
                buf += await asyncio.wait_for(reader.read(4 * MIB), 10)
            total += n
            buf = buf[n + 2 :]
            if n == 0:
                break
        writer.close()
    assert total == size
    assert rss.growth < RSS_GROWTH_LIMIT, f"agent RSS grew {rss.growth / MIB:.1f} MiB"


async def test_small_bodies_both_ways_exact(stream_agent):
    for size in (0, 1, 65535, 65536, 65537, 1_000_000):
        body = bytes((i * 7) % 256 for i in range(size))
        response = await get(stream_agent.port, "/upload", method="POST", body=body, headers=[("Content-Length", str(size))])
        assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
        response = await get(
            stream_agent.port,
            "/upload",
            method="POST",
            body=chunked(body, 4000) if size else b"0\r\n\r\n",
            headers=[("Transfer-Encoding", "chunked")],
        )
        assert response.json()["bytes"] == size


async def test_upstream_pool_is_bounded(stream_agent, upstream):
    upstream.reset_events()
    started = time.monotonic()
    responses = await asyncio.gather(*(get(stream_agent.port, f"/hold?delay_s=0.3&i={i}", timeout=6) for i in range(6)))
    assert [r.status for r in responses] == [200] * 6
    assert upstream.events()["hold_max_active"] <= MAX_CONNECTIONS
    assert len({r.json()["peer_port"] for r in responses}) <= MAX_CONNECTIONS
    assert time.monotonic() - started >= 0.85  # 6 requests of 0.3 s through 2 connections


async def test_upstream_connection_reused_across_client_connections(stream_agent):
    ports = set()
    for _ in range(20):
        response = await get(stream_agent.port, "/peer")
        ports.add(response.json()["peer_port"])
    assert len(ports) == 1, ports


async def test_many_requests_on_one_client_connection(stream_agent):
    reader, writer = await asyncio.open_connection("127.0.0.1", stream_agent.port)
    try:
        ports = set()
        for i in range(100):
            writer.write(b"GET /peer?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            status, headers, rest = await read_head(reader)
            while len(rest) < int(headers["content-length"]):
                rest += await asyncio.wait_for(reader.read(65536), 5)
            assert status == 200 and "connection" not in headers
            ports.add(json.loads(rest)["peer_port"])
        assert len(ports) == 1
    finally:
        writer.close()
