"""The SIGTERM figure's load: keep-alive clients and a readiness poller acting as a load balancer.

Half the connections send fast requests back to back, half 200 ms ones; each request carries an
X-Request-ID the parent looks up in the agent's access log. Once the poller sees the first
non-200 readiness, the clients stop starting requests a drain delay later, as a load balancer
that takes the pod out of rotation would. A connection is reopened after ``Connection: close``
or an error.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.reliability.clients.wire import (
    HOST,
    NET_ERRORS,
    classify,
    close_quietly,
    is_close,
    read_response,
    status_on_new_connection,
)
from bench.reliability.upstream import SLOW_PREFIX

READY_REQUEST = b"GET /health/ready HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n"
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class KeepAliveLoad:
    def __init__(self, p: dict[str, Any]) -> None:
        self.p = p
        self.records: list[list[Any]] = []  # [t_start, t_end, slow, status, error, new_conn, conn_close, request_id]
        self.ready: list[list[Any]] = []  # [t, latency ms, status]
        self.hard_end = time.time() + p["max_s"]
        self.stop_at: float | None = None
        self.flip_at: float | None = None
        self.started = asyncio.Event()
        self.warmed = 0

    def stopping(self) -> bool:
        now = time.time()
        return now >= self.hard_end or (self.stop_at is not None and now >= self.stop_at)

    async def poll_ready(self) -> None:
        await self.started.wait()
        while not self.stopping():
            t = time.time()
            status = await status_on_new_connection(self.p["port"], READY_REQUEST, 2)
            self.ready.append([t, round((time.time() - t) * 1000, 3), status])
            if self.flip_at is None and status != 200:
                self.flip_at = time.time()
                self.stop_at = self.flip_at + self.p["drain_delay_s"]
            await asyncio.sleep(self.p["poll_s"])

    async def worker(self, i: int) -> None:
        rng = random.Random(i)
        conn: Conn | None = None
        slow = i % 2 == 1  # half the connections fast back to back, half 200 ms requests
        k = 0
        while not self.stopping():
            k += 1
            n = rng.randrange(1, 1_000_000)
            if slow:
                path = f"{SLOW_PREFIX}{n}?delay_s={self.p['slow_delay_s']}"
            else:
                path = f"/api/v1/users/{n}/orders/{rng.getrandbits(48):012x}"
            conn = await self.request(conn, path, f"st-{i}-{k}", slow)
            if k == 1:
                self.warmed += 1
                if self.warmed == self.p["connections"]:
                    print("STARTED", flush=True)
                    self.started.set()
        close_quietly(conn[1] if conn else None)

    async def request(self, conn: Conn | None, path: str, rid: str, slow: bool) -> Conn | None:
        """One request, recorded; the connection to use next (None: open a new one)."""
        req = f"GET {path} HTTP/1.1\r\nHost: app\r\nX-Request-ID: {rid}\r\n\r\n".encode()
        t0 = time.time()
        new_conn = conn is None
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(HOST, self.p["port"]), 2)
            reader, writer = conn
            writer.write(req)
            status, headers, _ = await asyncio.wait_for(read_response(reader), 15)
        except NET_ERRORS as exc:
            err = classify(exc)
            self.records.append([t0, time.time(), int(slow), 0, err, int(new_conn), 0, rid])
            close_quietly(conn[1] if conn else None)
            if err == "refused":
                await asyncio.sleep(0.01)
            return None
        close = is_close(headers)
        self.records.append([t0, time.time(), int(slow), status, "", int(new_conn), int(close), rid])
        if close:
            close_quietly(writer)
            return None
        return conn

    async def run(self) -> dict[str, Any]:
        await asyncio.gather(self.poll_ready(), *(self.worker(i) for i in range(self.p["connections"])))
        return {"records": self.records, "ready": self.ready, "stop_at": self.stop_at, "flip_at": self.flip_at}


async def run(p: dict[str, Any]) -> dict[str, Any]:
    return await KeepAliveLoad(p).run()
