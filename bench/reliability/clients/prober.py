"""The overload figure's probes: poll the probe paths as the kubelet does, until SIGINT.

A new connection for every probe, ``paths`` in turn, one every ``interval_s``; each sample is
``[wall time, path, latency ms, status or failure name]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any

from bench.reliability.clients.wire import status_on_new_connection


async def run(p: dict[str, Any]) -> dict[str, Any]:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    samples: list[list[Any]] = []
    end = time.time() + p["max_s"]
    print("STARTED", flush=True)
    i = 0
    while not stop.is_set() and time.time() < end:
        path = p["paths"][i % len(p["paths"])]
        i += 1
        request = f"GET {path} HTTP/1.1\r\nHost: kubelet\r\nUser-Agent: kube-probe/1.30\r\nConnection: close\r\n\r\n".encode()
        wall = time.time()
        t0 = time.perf_counter()
        status = await status_on_new_connection(p["port"], request, 2)
        samples.append([wall, path, round((time.perf_counter() - t0) * 1000, 3), status])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), p["interval_s"])
    return {"samples": samples}
