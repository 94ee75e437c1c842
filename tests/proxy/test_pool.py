"""agent.proxy.upstream.UpstreamPool against a real listening socket: bound, reuse, idle expiry."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.proxy.upstream import PoolExhausted, UpstreamPool


@pytest.fixture
async def server():  # type: ignore[no-untyped-def]
    accepted: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # hold the connection until the client closes it

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1], accepted
    for writer in accepted:
        writer.close()
    srv.close()
    await srv.wait_closed()


async def test_connections_are_bounded_and_waiters_get_released_ones(server) -> None:  # type: ignore[no-untyped-def]
    port, accepted = server
    pool = UpstreamPool(host="127.0.0.1", port=port, unix_path=None, max_connections=2, connect_timeout_s=0.3)
    a = await pool.acquire()
    b = await pool.acquire()
    assert pool.size == 2
    with pytest.raises(PoolExhausted):
        await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.01)
    pool.release(a)
    assert await asyncio.wait_for(waiter, 1) is a
    b.abort()
    assert pool.size == 1
    pool.close()
    assert pool.size == 0 and len(accepted) == 2


async def test_idle_connections_are_reused_newest_first_and_expire(server) -> None:  # type: ignore[no-untyped-def]
    port, _ = server
    pool = UpstreamPool(host="127.0.0.1", port=port, unix_path=None, max_connections=4, connect_timeout_s=1, idle_timeout_s=0.5)
    a, b = await pool.acquire(), await pool.acquire()
    pool.release(a)
    pool.release(b)
    assert pool.take_idle() is b
    pool.release(b)
    pool.sweep(time.monotonic() + 1.0)
    assert pool.take_idle() is None and a.closed and b.closed
    pool.close()


async def test_a_connection_the_app_closed_is_never_handed_out(server) -> None:  # type: ignore[no-untyped-def]
    port, accepted = server
    pool = UpstreamPool(host="127.0.0.1", port=port, unix_path=None, max_connections=2, connect_timeout_s=1)
    conn = await pool.acquire()
    pool.release(conn)
    accepted[0].close()
    for _ in range(100):
        if conn.closed:
            break
        await asyncio.sleep(0.01)
    assert conn.closed and pool.take_idle() is None and pool.size == 0
    pool.close()


def test_from_url() -> None:
    pool = UpstreamPool.from_url("http://app:9000", max_connections=1, connect_timeout_s=1)
    assert (pool.host, pool.port, pool.unix_path) == ("app", 9000, None)
    pool = UpstreamPool.from_url("unix:/run/app.sock", max_connections=1, connect_timeout_s=1)
    assert pool.unix_path == "/run/app.sock"
