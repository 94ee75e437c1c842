"""The overload figure's load: bursts of concurrent slow requests, and lone ones during each burst.

Each burst sends one request on each of ``concurrency`` keep-alive connections at the same
moment; while the burst holds every slot, single requests go one at a time on a connection of
their own (the 503 latency without hundreds of responses arriving at once in this client).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from bench.reliability.clients.wire import HOST, NET_ERRORS, classify, close_quietly, is_close, read_response
from bench.reliability.upstream import SLOW_PREFIX

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def error_code(status: int, body: bytes) -> str:
    """The agent's ``error_code`` from a JSON error body, else ""."""
    if status >= 400 and body.startswith(b"{"):
        with contextlib.suppress(ValueError):
            return str(json.loads(body).get("error_code", ""))
    return ""


class Bursts:
    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.conns: list[Conn | None] = [None] * p["concurrency"]
        self.results: list[list[Any]] = []  # [round, status, error_code, retry_after, latency_ms, t_send, error]
        self.lone: list[list[Any]] = []  # [round, status or error, latency_ms]
        self.t_first: float | None = None
        self.t_last = 0.0

    def request(self, rnd: int, n: int) -> bytes:
        return f"GET {SLOW_PREFIX}{rnd * 1000 + n}?delay_s={self.p['delay_s']} HTTP/1.1\r\nHost: app\r\n\r\n".encode()

    async def ensure(self, i: int) -> None:
        if self.conns[i] is None:
            self.conns[i] = await asyncio.wait_for(asyncio.open_connection(HOST, self.p["port"]), 5)

    async def one(self, rnd: int, i: int, go: asyncio.Event) -> None:
        await go.wait()
        conn = self.conns[i]
        assert conn is not None
        reader, writer = conn
        req = self.request(rnd, i)
        wall = time.time()
        self.t_first = wall if self.t_first is None else min(self.t_first, wall)
        t0 = time.perf_counter()
        try:
            writer.write(req)
            status, headers, body = await asyncio.wait_for(read_response(reader), 15)
            ms = (time.perf_counter() - t0) * 1000
            retry_after = int(b"retry-after" in headers)
            self.results.append([rnd, status, error_code(status, body), retry_after, round(ms, 3), wall, ""])
            if is_close(headers):
                close_quietly(writer)
                self.conns[i] = None
        except NET_ERRORS as exc:
            self.results.append([rnd, 0, "", 0, round((time.perf_counter() - t0) * 1000, 3), wall, classify(exc)])
            close_quietly(writer)
            self.conns[i] = None
        self.t_last = max(self.t_last, time.time())

    async def lone_requests(self, rnd: int) -> None:
        """While the burst holds every slot: single requests, one at a time, on their own connection."""
        await asyncio.sleep(0.15)
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.p["port"]), 5)
            for k in range(self.p["lone_per_round"]):
                req = self.request(rnd, 900 + k)
                t0 = time.perf_counter()
                writer.write(req)
                status, headers, _ = await asyncio.wait_for(read_response(reader), 15)
                self.lone.append([rnd, status, round((time.perf_counter() - t0) * 1000, 3)])
                if is_close(headers):
                    break
                await asyncio.sleep(0.02)
        except NET_ERRORS as exc:
            self.lone.append([rnd, classify(exc), 0.0])
        finally:
            close_quietly(writer)

    async def burst(self, rnd: int) -> None:
        n = self.p["concurrency"]
        await asyncio.gather(*(self.ensure(i) for i in range(n)))
        await asyncio.sleep(0.1)
        go = asyncio.Event()
        tasks = [asyncio.ensure_future(self.one(rnd, i, go)) for i in range(n)]
        await asyncio.sleep(0)  # every task is now waiting on ``go``
        go.set()
        await asyncio.gather(*tasks, self.lone_requests(rnd))

    async def run(self) -> dict[str, Any]:
        for rnd in range(self.p["rounds"]):
            await self.burst(rnd)
            await asyncio.sleep(self.p["pause_s"])
        for conn in self.conns:
            if conn is not None:
                close_quietly(conn[1])
        return {"results": self.results, "lone": self.lone, "t_first_send": self.t_first, "t_last_end": self.t_last}


async def run(p: dict[str, Any]) -> dict[str, Any]:
    return await Bursts(p).run()
