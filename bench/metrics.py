"""Metrics benchmark: what ``HttpMetrics.observe()`` costs per request and what a scrape costs.

    python -m bench.metrics [--routes 200] [--repeat 5]

Everything runs in this process, without sockets, so the numbers are the metrics code alone:

* ``observe()``: ``start()`` + ``observe()`` for a request whose label children exist already
  (the steady state), and for a new path (route folding on a cache miss).
* scrape: ``--routes`` distinct routes, each seen as ``GET 200``, ``GET 404``, ``GET 500`` and
  ``POST 201`` (so 2 histograms and 4 counters per route), plus three checks in the health
  collector; time to render the text format, OpenMetrics, and text + gzip, the series count and
  the body size.
* loop stall: the worst lateness of a 1 ms asyncio timer while one OpenMetrics scrape renders on
  the loop (what the main-listener fallback does), and while it renders in a worker thread
  (``asyncio.to_thread``, what the admin listener does), where the loop only waits for the GIL.

Prints a table and, as the last line, one JSON object with every number (medians of ``--repeat``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


from agent.checks.base import failed, passed  # noqa: E402
from agent.config import build_config  # noqa: E402
from agent.health.monitor import Monitor, ScheduledCheck  # noqa: E402
from agent.metrics import create_registry  # noqa: E402
from agent.metrics.exposition import render  # noqa: E402
from agent.secrets import Redactor  # noqa: E402

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
MIX = (("GET", 200), ("GET", 404), ("GET", 500), ("POST", 201))


def make_monitor() -> tuple[Any, Monitor]:
    config = build_config(
        {
            "checks": {
                "database": {"type": "tcp", "port": 5432},
                "upstream": {"enabled": True},
                "disk": {"enabled": True},
            }
        },
        {},
        "bench",
    )
    results = {
        "database": passed(server_version="16.4", in_recovery=False, connections_used_ratio=0.12),
        "upstream": failed("connection refused"),
        "disk": passed(free_ratio=0.42),
    }
    scheduled = []
    for check_config in config.checks:

        async def check(name: str = check_config.name) -> Any:
            return results[name]

        scheduled.append(ScheduledCheck(check_config, check))
    return config, Monitor(scheduled, Redactor(()), max_loop_lag_s=1.0, default_interval_s=5.0)


def per_call_us(fn: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def bench_observe(config: Any, monitor: Monitor, n: int) -> tuple[float, float]:
    _, http = create_registry(config, monitor)
    http.start()
    http.observe("GET", "/api/v1/plans/42", 200, 0.012)

    def steady() -> None:
        http.start()
        http.observe("GET", "/api/v1/plans/42?page=2", 200, 0.012)

    counter = iter(range(10**9))

    def new_path() -> None:
        http.start()
        http.observe("GET", f"/api/v1/plans/{next(counter)}", 200, 0.012)

    return per_call_us(steady, n), per_call_us(new_path, n // 10)


def bench_scrape(config: Any, monitor: Monitor, routes: int, repeat: int) -> dict[str, Any]:
    registry, http = create_registry(config, monitor)
    for i in range(routes):
        for method, status in MIX:
            http.start()
            http.observe(method, f"/api/v1/resource{i}/{i * 7919}", status, 0.001 * (i % 50))
    assert len(http.routes.routes) == min(routes, config.metrics.max_routes)
    result: dict[str, Any] = {}
    for label, accept, encoding in (("text", "", ""), ("openmetrics", OPENMETRICS, ""), ("text_gzip", "", "gzip")):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            body, _ = render(registry, accept, encoding, [])
            times.append(time.perf_counter() - started)
        result[f"{label}_ms"] = round(statistics.median(times) * 1000, 2)
        result[f"{label}_bytes"] = len(body)
    text, _ = render(registry, "", "", [])
    result["series"] = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
    result["http_series"] = sum(1 for line in text.decode().splitlines() if line.startswith("agent_http_"))
    for in_thread in (False, True):
        stalls = [asyncio.run(worst_loop_stall_ms(registry, in_thread=in_thread)) for _ in range(repeat)]
        result["loop_stall_thread_ms" if in_thread else "loop_stall_ms"] = round(statistics.median(stalls), 1)
    return result


async def worst_loop_stall_ms(registry: Any, *, in_thread: bool) -> float:
    loop = asyncio.get_running_loop()
    worst = 0.0
    stopping = False

    async def ticker() -> None:
        nonlocal worst
        while not stopping:
            before = loop.time()
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - before - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    worst = 0.0
    if in_thread:
        await asyncio.to_thread(render, registry, OPENMETRICS, "", [])
    else:
        render(registry, OPENMETRICS, "", [])
    await asyncio.sleep(0.01)
    stopping = True
    await task
    return worst * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args(argv)

    config, monitor = make_monitor()
    steady, new_path = zip(*(bench_observe(config, monitor, args.calls) for _ in range(args.repeat)), strict=True)
    config = build_config({"metrics": {"max_routes": max(args.routes, 1)}}, {}, "bench")
    scrape = bench_scrape(config, monitor, args.routes, args.repeat)
    result = {
        "observe_us": round(statistics.median(steady), 3),
        "observe_new_path_us": round(statistics.median(new_path), 3),
        "routes": args.routes,
        **{f"scrape_{k}": v for k, v in scrape.items()},
        "python": sys.version.split()[0],
    }
    print(f"start()+observe(), label children cached   {result['observe_us']:8.2f} µs")
    print(f"start()+observe(), new path (fold miss)    {result['observe_new_path_us']:8.2f} µs")
    print(f"scrape with {args.routes} routes: {scrape['series']} series ({scrape['http_series']} agent_http_*)")
    print(f"  text          {scrape['text_ms']:8.1f} ms  {scrape['text_bytes']:>9} bytes")
    print(f"  OpenMetrics   {scrape['openmetrics_ms']:8.1f} ms  {scrape['openmetrics_bytes']:>9} bytes")
    print(f"  text + gzip   {scrape['text_gzip_ms']:8.1f} ms  {scrape['text_gzip_bytes']:>9} bytes")
    print(
        f"  worst loop stall during one OpenMetrics scrape: {scrape['loop_stall_ms']:.1f} ms on the loop, "
        f"{scrape['loop_stall_thread_ms']:.1f} ms rendered in a thread (as the admin listener does)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
