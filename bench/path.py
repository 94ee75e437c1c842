"""The main listener's Python work per proxied request, without sockets or a load generator.

    python -m bench.path [--requests 20000] [--runs 7] [--probe]

Drives the real ``ClientConnection`` and ``UpstreamConnection`` with in-memory transports: each
request is parsed, forwarded to a pooled upstream connection, its response parsed, made the
agent's (ids, security headers, metrics, the JSON access log into memory) and written back. No
syscall or event-loop work is counted, so this isolates the per-request Python cost that
``bench.proxy`` measures together with the kernel's, with far less noise: use it to compare two
versions of the request path (run it in each checkout) and to profile (``py-spy record -- python
-m bench.path``). ``--probe`` sends ``GET /health/ready`` instead: the answer the agent makes
itself, the upstream leg unused. Prints one line per run and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from typing import Any

from agent.app import create_metrics, create_monitor
from agent.config import build_config
from agent.proxy import listener, upstream
from agent.proxy.access_log import AccessLog
from agent.proxy.main import create_main_listener
from agent.tracing import Tracer

REQUEST = b"GET /v1/plans/1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
PROBE = b"GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\n\r\n"
BODY = b'{"id":1,"name":"plan","status":"active"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 05 Dec 2026 08:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: keep-alive\r\n\r\n%s" % (len(BODY), BODY)
)


class MemoryTransport:
    """What a protocol needs of a transport; writes are kept (and dropped between runs)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def measure(requests: int, runs: int, tracing: float | None = None, probe: bool = False) -> list[float]:
    raw: dict[str, Any] = {"checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}}}
    if tracing is not None:  # spans go to a port nothing listens on: export fails in the worker thread
        raw["tracing"] = {"enabled": True, "sample_ratio": tracing, "endpoint": "http://127.0.0.1:9/v1/traces"}
    config = build_config(raw, {}, "bench")
    monitor = create_monitor(config)
    _, http_metrics = create_metrics(config, monitor)
    tracer = Tracer(config.tracing) if config.tracing.enabled else None
    ctx = create_main_listener(config, monitor, metrics=http_metrics, tracer=tracer).ctx
    sink = io.BytesIO()
    ctx.access_log = AccessLog(enabled=True, direct=True, stream=sink)
    app = upstream.UpstreamConnection(ctx.pool)
    app_side = MemoryTransport()
    app.connection_made(app_side)  # type: ignore[arg-type]
    ctx.pool.open.add(app)
    ctx.pool.idle.append(app)
    client = listener.ClientConnection(ctx)
    client_side = MemoryTransport()
    client.connection_made(client_side)  # type: ignore[arg-type]

    def one() -> None:
        client.data_received(REQUEST)
        app.data_received(RESPONSE)

    def one_probe() -> None:
        client.data_received(PROBE)

    if probe:
        one = one_probe
    for _ in range(2000):
        one()
    if not client_side.written or b" 200 OK" not in client_side.written[-1]:
        raise SystemExit(f"the request path did not answer 200: {client_side.written[-1:]!r}")
    results = []
    for _ in range(runs):
        client_side.written.clear()
        app_side.written.clear()
        sink.seek(0)
        sink.truncate()
        started = time.thread_time()  # CPU time: a busy machine delays the run, not its cost
        for _ in range(requests):
            one()
        results.append((time.thread_time() - started) / requests * 1e6)
    ctx.access_log.flush()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.path", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per run (default 20000)")
    parser.add_argument("--runs", type=int, default=7, help="runs (default 7)")
    parser.add_argument("--tracing", type=float, default=None, metavar="RATIO", help="tracing on at this sample_ratio")
    parser.add_argument("--probe", action="store_true", help="GET /health/ready (answered by the agent) instead of a proxied GET")
    args = parser.parse_args()
    results = asyncio.run(measure(args.requests, args.runs, args.tracing, args.probe))
    for i, result in enumerate(results, 1):
        print(f"run {i}: {result:.2f} µs per request")
    what = "/health/ready probe" if args.probe else "proxied request"
    print(f"median: {statistics.median(results):.2f} µs of Python per {what} (no syscalls, no event loop)")


if __name__ == "__main__":
    main()
