"""Clients trickling request bodies cannot take the app's connections away from everyone else."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import fast_checks
from tests.support.agent import http_get


async def test_trickling_bodies_do_not_hold_upstream_connections(agent_factory, healthy_upstream):
    config = fast_checks(healthy_upstream.url)
    config["upstream"]["max_connections"] = 2
    config["upstream"]["connect_timeout_s"] = 0.5
    config["proxy"] = {"body_timeout_s": 5.0}
    agent = agent_factory(config)
    healthy_upstream.reset_events()
    writers = []
    try:
        for _ in range(20):  # ten times the app connections, each a body that will take hours
            _, writer = await asyncio.open_connection("127.0.0.1", agent.port)
            writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 100)
            writers.append(writer)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        for _ in range(10):
            response = await asyncio.to_thread(http_get, agent.url + "/echo")
            assert response.status == 200
        assert time.monotonic() - started < 2.0
        assert healthy_upstream.events().get("upload_complete", 0) == 0
    finally:
        for writer in writers:
            writer.close()
