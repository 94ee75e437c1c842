"""SIGTERM under steady load: readiness flips at once, no accepted request fails, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.conftest import fast_checks

DRAIN_DELAY_S = 1.5


async def drive_load(agent, stop_at: float, counts: dict[str, int], failures: list[str]) -> None:
    """Keep-alive clients sending proxied requests (some slow) and health probes until ``stop_at``."""

    async def client(n: int) -> None:
        async with aiohttp.ClientSession() as session:
            i = 0
            while time.monotonic() < stop_at:
                path = "/slow?delay_s=0.4" if (n + i) % 4 == 0 else "/echo"
                i += 1
                try:
                    async with session.get(agent.url + path, timeout=aiohttp.ClientTimeout(total=10)) as response:
                        await response.read()
                        counts[str(response.status)] = counts.get(str(response.status), 0) + 1
                        if response.status != 200:
                            failures.append(f"{path}: {response.status}")
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    failures.append(f"{path}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(client(n) for n in range(20)))


@pytest.mark.slow
async def test_sigterm_under_load_drops_nothing(agent_factory, healthy_upstream):
    config = fast_checks(healthy_upstream.url)
    config["server"] = {"drain_delay_s": DRAIN_DELAY_S, "shutdown_timeout_s": 5.0}
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)
    counts: dict[str, int] = {}
    failures: list[str] = []
    signalled = time.monotonic() + 1.0
    # Clients stop starting new requests a little before the drain delay ends, as a load
    # balancer does once it has seen readiness fail; requests in flight then must complete.
    load = asyncio.create_task(drive_load(agent, signalled + DRAIN_DELAY_S - 0.3, counts, failures))
    await asyncio.sleep(1.0)
    agent.send_signal(signal.SIGTERM)
    ready_after_sigterm = None
    async with aiohttp.ClientSession() as session:
        for _ in range(40):
            async with session.get(agent.url + "/health/ready") as response:
                if response.status == 503:
                    ready_after_sigterm = await response.json()
                    break
            await asyncio.sleep(0.02)
        async with session.get(agent.url + "/health/live") as response:
            assert response.status == 200  # liveness stays 200 while draining
        async with session.get(agent.url + "/echo") as response:
            assert response.status == 200
            assert response.headers.get("Connection", "").lower() == "close"
    assert ready_after_sigterm is not None and ready_after_sigterm["draining"] is True
    await load
    exit_code = await asyncio.to_thread(agent.wait, 15)
    assert failures == []
    assert sum(counts.values()) > 100
    assert exit_code == 0
    exit_time = [r for r in agent.log_records() if r["message"] == "agent stopped"]
    assert exit_time and exit_time[0]["shutdown_s"] < DRAIN_DELAY_S + 2


@pytest.mark.slow
async def test_in_flight_requests_finish_after_listener_closes(agent_factory, healthy_upstream):
    config = fast_checks(healthy_upstream.url)
    config["server"] = {"drain_delay_s": 0.2, "shutdown_timeout_s": 5.0}
    agent = agent_factory(config)
    async with aiohttp.ClientSession() as session:
        pending = [asyncio.create_task(session.get(agent.url + "/slow?delay_s=1.5")) for _ in range(5)]
        await asyncio.sleep(0.3)
        agent.send_signal(signal.SIGTERM)
        responses = await asyncio.gather(*pending)
        assert [r.status for r in responses] == [200] * 5
        for r in responses:
            r.release()
    assert await asyncio.to_thread(agent.wait, 15) == 0
