"""The fault proxy itself (tests/support/faultproxy.py), against a raw HTTP server: each toxic does
what the reliability scenarios rely on, and ``stop()`` leaves nothing open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.faultproxy import DOWNSTREAM, UPSTREAM, FaultProxy
from tests.support.rawhttp import raw_exchange, request
from tests.support.rawupstream import RawConnection, RawRequest, RawUpstream

BODY = bytes(range(256)) * 20  # 5120 bytes
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)


async def _big(conn: RawConnection, req: RawRequest) -> bool:
    await conn.send(HEAD + BODY)
    return True


@pytest.fixture(scope="module")
def target() -> Iterator[RawUpstream]:
    server = RawUpstream().start()
    server.routes["/big"] = _big
    yield server
    server.stop()


@pytest.fixture
def proxy(target: RawUpstream, fault_proxy: Callable[[str, int], FaultProxy]) -> FaultProxy:
    target.requests.clear()
    return fault_proxy("127.0.0.1", target.port)


def served(target: RawUpstream, path: str) -> int:
    return len(target.requests_to(path))


async def test_clean_pipe_forwards_and_counts(proxy: FaultProxy, target: RawUpstream) -> None:
    ex = await raw_exchange(proxy.port, request("GET", "/big"), until_responses=1)
    response = ex.response()
    assert response.status == 200 and response.body == BODY
    assert proxy.accepted == 1 and proxy.bytes_down == len(ex.data) and proxy.bytes_up > 0
    assert served(target, "/big") == 1


async def test_latency_with_jitter_per_direction(proxy: FaultProxy) -> None:
    proxy.latency(0.2, 0.05)
    ex = await raw_exchange(proxy.port, request("GET", "/big"), until_responses=1)
    assert ex.response().body == BODY and 0.14 <= ex.elapsed_s < 0.6, ex.elapsed_s
    proxy.clear()
    proxy.latency(0.2, direction=UPSTREAM)
    ex = await raw_exchange(proxy.port, request("GET", "/big"), until_responses=1)
    assert ex.response().status == 200 and 0.19 <= ex.elapsed_s < 0.6, ex.elapsed_s


async def test_down_refuses_then_up_listens_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.down()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    proxy.up()
    assert proxy.port == port
    assert (await raw_exchange(port, request("GET", "/big"), until_responses=1)).response().status == 200


async def test_down_cuts_open_connections(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        assert proxy.wait_for(lambda: proxy.active == 1)
        proxy.down()
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        writer.close()


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
async def test_cut_links_cuts_open_connections_and_keeps_listening(proxy: FaultProxy, reset: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(request("GET", "/big"))
        assert len(await asyncio.wait_for(reader.readexactly(len(HEAD + BODY)), 2)) == len(HEAD + BODY)
        proxy.cut_links(reset=reset)
        if reset:
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 2)
        else:
            assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        writer.close()
    assert (await raw_exchange(proxy.port, request("GET", "/big"), until_responses=1)).response().status == 200


async def test_blackhole_accepts_never_answers_never_closes(proxy: FaultProxy, target: RawUpstream) -> None:
    proxy.blackhole()
    ex = await raw_exchange(proxy.port, request("GET", "/big"), timeout_s=0.6)
    assert ex.data == b"" and not ex.closed and ex.elapsed_s >= 0.6
    assert served(target, "/big") == 0
    assert proxy.count("blackholed_connection") == 1


async def test_blackhole_on_an_open_connection_swallows_one_direction(proxy: FaultProxy, target: RawUpstream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(request("GET", "/big"))
        assert await asyncio.wait_for(reader.readexactly(len(HEAD + BODY)), 2) == HEAD + BODY
        proxy.blackhole(direction=DOWNSTREAM)
        writer.write(request("GET", "/big"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.4)
        assert served(target, "/big") == 2  # the request went through, its answer did not
    finally:
        writer.close()


async def test_reset_before_response_is_a_tcp_reset(proxy: FaultProxy, target: RawUpstream) -> None:
    proxy.reset_before_response()
    ex = await raw_exchange(proxy.port, request("GET", "/big"), timeout_s=2)
    assert ex.reset and ex.data == b""
    assert served(target, "/big") == 0
    proxy.reset_before_response(forward=True)
    ex = await raw_exchange(proxy.port, request("GET", "/big"), timeout_s=2)
    assert ex.reset and ex.data == b""
    assert proxy.wait_for(lambda: served(target, "/big") == 1)


async def test_reset_after_headers_forwards_exactly_the_head(proxy: FaultProxy) -> None:
    proxy.reset_after_headers()
    ex = await raw_exchange(proxy.port, request("GET", "/big"), timeout_s=2)
    assert ex.reset
    assert ex.data == HEAD


async def test_close_mid_body_forwards_n_body_bytes_then_fin(proxy: FaultProxy) -> None:
    proxy.close_mid_body(1000)
    ex = await raw_exchange(proxy.port, request("GET", "/big"), timeout_s=2)
    assert ex.closed and not ex.reset
    (response,) = ex.responses()
    assert response.body == BODY[:1000] and not response.complete


async def test_close_on_reuse(proxy: FaultProxy, target: RawUpstream) -> None:
    proxy.close_on_reuse()
    ex = await raw_exchange(proxy.port, [request("GET", "/big"), request("GET", "/big")], gap_s=0.2, timeout_s=2)
    assert ex.closed and [r.status for r in ex.responses()] == [200]
    assert served(target, "/big") == 1  # the second request never reached the target
    proxy.close_on_reuse(forward=True)
    ex = await raw_exchange(proxy.port, [request("GET", "/big"), request("GET", "/big")], gap_s=0.2, timeout_s=2)
    assert ex.closed and [r.status for r in ex.responses()] == [200]
    assert proxy.wait_for(lambda: served(target, "/big") == 3)  # ...and with forward=True it did


async def test_respond_with_replaces_the_response(proxy: FaultProxy, target: RawUpstream) -> None:
    proxy.respond_with(b"garbage\r\n\r\n")
    ex = await raw_exchange(proxy.port, request("GET", "/big"), timeout_s=2)
    assert ex.closed and ex.data == b"garbage\r\n\r\n"
    assert served(target, "/big") == 0


async def test_slicer_delivers_tiny_segments_intact(proxy: FaultProxy) -> None:
    proxy.slicer(size=16, variation=8, delay_s=0.0005)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(request("GET", "/big"))
        data, reads = b"", 0
        while not data.endswith(BODY):
            piece = await asyncio.wait_for(reader.read(65536), 3)
            assert piece
            data += piece
            reads += 1
        assert reads > 20, reads  # many separate segments, not one
    finally:
        writer.close()


async def test_bandwidth_limits_throughput(proxy: FaultProxy) -> None:
    proxy.bandwidth(10_240)  # 10 KiB/s: the 5 KiB body takes about half a second
    started = time.monotonic()
    ex = await raw_exchange(proxy.port, request("GET", "/big"), until_responses=1, timeout_s=3)
    elapsed = time.monotonic() - started
    assert ex.response().body == BODY
    assert 0.4 <= elapsed < 1.5, elapsed


async def test_stop_closes_everything(target: RawUpstream) -> None:
    proxy = FaultProxy("127.0.0.1", target.port).start()
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    proxy.blackhole()
    held_reader, held_writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        assert proxy.wait_for(lambda: proxy.active == 2)
        proxy.stop()
        assert await asyncio.wait_for(idle_reader.read(), 2) == b""
        assert await asyncio.wait_for(held_reader.read(), 2) == b""
        assert proxy.active == 0
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", proxy.port)
    finally:
        idle_writer.close()
        held_writer.close()
