"""Tunnels through a real agent process: SIGTERM with open WebSockets, and a slow reader's memory."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import aiohttp
import psutil
import pytest
from aiohttp import web

from tests.conftest import fast_checks
from tests.proxy.test_websocket import RawApp, handshake, read_head, switch
from tests.support.agent import AgentProcess

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def ws_upstream(closes: list[int]) -> tuple[web.AppRunner, str]:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            await socket.send_str("echo:" + message.data)
        closes.append(socket.close_code or 0)
        return socket

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_sigterm_keeps_tunnels_through_the_drain_delay_then_says_going_away(
    agent_factory: Callable[..., AgentProcess],
) -> None:
    closes: list[int] = []
    runner, url = await ws_upstream(closes)
    config = fast_checks(url)
    config["server"] = {"drain_delay_s": 1.5, "shutdown_timeout_s": 5.0}
    agent = agent_factory(config)
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{agent.url}/ws") as client:
        await client.send_str("before")
        assert (await client.receive(timeout=5)).data == "echo:before"
        agent.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.sleep(0.5)
        await client.send_str("during the drain delay")  # the load balancer is moving away; the tunnel still works
        assert (await client.receive(timeout=5)).data == "echo:during the drain delay"
        closing = await client.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1001, closing
        assert time.monotonic() - signalled >= 1.4
    assert await asyncio.get_running_loop().run_in_executor(None, agent.wait, 15) == 0
    for _ in range(50):
        if closes:
            break
        await asyncio.sleep(0.05)
    assert closes == [1001]
    line = next(r for r in agent.log_records() if r.get("message") == "request completed" and r.get("status") == 101)
    assert line["closed_by"] == "drain" and line["bytes_in"] > 0 and line["bytes_out"] > 0
    await runner.cleanup()


async def test_one_gib_at_a_slow_reader_keeps_agent_memory_flat(agent_factory: Callable[..., AgentProcess]) -> None:
    total = 1024 * MIB
    chunk = b"\x82\x7f" + (MIB).to_bytes(8, "big") + b"\x00" * MIB  # one 1 MiB binary frame (server to client)
    app = RawApp(lambda r, w: None)  # type: ignore[arg-type, return-value]

    async def push(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await switch(reader, writer, app.heads)
        for _ in range(total // MIB):
            writer.write(chunk)
            await writer.drain()  # the agent's backpressure reaches the app here

    app.handler = push
    url = await app.start()
    agent = agent_factory(fast_checks(url))
    process = psutil.Process(agent.process.pid)  # type: ignore[union-attr]
    baseline = process.memory_info().rss
    reader, writer = await asyncio.open_connection("127.0.0.1", agent.port, limit=256 * 1024)
    writer.write(handshake()[0])
    assert (await read_head(reader))[0] == 101
    received = 0
    peak = baseline
    started = time.monotonic()
    expected = total // MIB * len(chunk)
    while received < expected and time.monotonic() - started < 60:
        data = await reader.read(256 * 1024)
        if not data:
            break
        received += len(data)
        if received % (32 * MIB) < len(data):
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.05)  # a reader slower than the app: the agent must not buffer the difference
    writer.close()
    await app.stop()
    assert received == expected
    growth_mib = (peak - baseline) / MIB
    assert growth_mib <= 16, f"agent RSS grew {growth_mib:.1f} MiB while relaying 1 GiB"
