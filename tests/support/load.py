"""Many requests, quickly: keep-alive connections sending GETs back to back (a closed loop, as wrk).

``hammer(port, path, total=100_000, connections=8)`` returns a :class:`LoadResult` with every
status and each request's latency. The responses must carry ``Content-Length`` (the agent's and
the test upstream's do); anything else is counted in ``errors``. Bounded: ``timeout_s`` for the
whole run.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def summary(self) -> str:
        lat = self.latencies_s
        return (
            f"{self.requests} requests in {self.duration_s:.1f}s ({self.requests / max(self.duration_s, 1e-9):.0f}/s), "
            f"statuses {dict(self.statuses)}, p50 {statistics.median(lat) * 1000 if lat else 0:.2f} ms, "
            f"p99 {self.percentile(0.99) * 1000:.2f} ms, max {max(lat, default=0) * 1000:.1f} ms, errors {self.errors[:3]}"
        )


def _content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError(f"no Content-Length in {head[:200]!r}")
    end = lower.index(b"\r\n", at + 2)
    return int(lower[at + 17 : end])


async def _worker(port: int, request: bytes, count: int, result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
            result.latencies_s.append(time.perf_counter() - started)
            result.statuses[int(head[9:12])] += 1
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        result.errors.append(repr(exc))
    finally:
        writer.close()


async def _hammer(port: int, request: bytes, total: int, connections: int, timeout_s: float) -> LoadResult:
    result = LoadResult()
    per_connection, extra = divmod(total, connections)
    started = time.perf_counter()
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(_worker(port, request, per_connection + (i < extra), result) for i in range(connections)))
    result.duration_s = time.perf_counter() - started
    return result


def hammer(
    port: int,
    path: str,
    *,
    total: int,
    connections: int = 8,
    headers: dict[str, str] | None = None,
    timeout_s: float = 300.0,
) -> LoadResult:
    """``total`` GETs of ``path`` spread over ``connections`` keep-alive connections."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}\r\n".encode("latin-1")
    try:
        from uvloop import new_event_loop as loop_factory
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_hammer(port, request, total, connections, timeout_s))
