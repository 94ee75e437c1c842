"""``python -m bench.rss_agent run -c FILE``: the agent with a probe thread, for ``bench.rss --probe``.

A thread answers each line on stdin by writing a JSON report to ``$BENCH_RSS_REPORT``: with
``$BENCH_RSS_TRACEMALLOC`` (frames; tracemalloc started before the agent's first import), Python
allocations by top-level package (the most recent frame outside importlib, so a module's code
objects count for it), glibc's heap (``mallinfo2``), and the RSS before and after ``gc.collect()``
and ``malloc_trim(0)``. Only the standard library is imported before tracemalloc starts.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _package_of(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    path = Path(filename)
    if str(REPO_ROOT) in filename:
        return "/".join(path.relative_to(REPO_ROOT).parts[:2]).removesuffix(".py")
    if filename.startswith("<"):
        return filename
    return "stdlib:" + (path.parent.name if path.parent.name not in ("python3.11", "lib") else path.stem)


def _report(path: str) -> None:
    import ctypes
    import gc

    out: dict[str, Any] = {"rss": _rss()}
    if tracemalloc.is_tracing():
        by_package: collections.Counter[str] = collections.Counter()
        for trace in tracemalloc.take_snapshot().traces:
            frames = [f.filename for f in reversed(trace.traceback)]  # most recent first
            owner = next((f for f in frames if "importlib" not in f and "tracemalloc" not in f), frames[0])
            by_package[_package_of(owner)] += trace.size
        out["traced"] = tracemalloc.get_traced_memory()[0]
        out["by_package"] = by_package.most_common(40)

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (n, ctypes.c_size_t)
            for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    out.update(heap_in_use=info.uordblks, heap_free=info.fordblks, mmapped=info.hblkhd, arena=info.arena)
    out["gc_collected"] = gc.collect()
    out["rss_after_gc"] = _rss()
    libc.malloc_trim(0)
    out["rss_after_trim"] = _rss()
    Path(path).write_text(json.dumps(out))


def agent_wrapper(argv: list[str]) -> int:
    """The agent's own ``main`` under tracemalloc; a line on stdin asks for a report."""
    if frames := int(os.environ.get("BENCH_RSS_TRACEMALLOC") or 0):
        tracemalloc.start(frames)

    def serve() -> None:
        for _ in sys.stdin:
            _report(os.environ["BENCH_RSS_REPORT"])

    threading.Thread(target=serve, name="bench-rss", daemon=True).start()
    from agent.cli import main

    return main(argv)


if __name__ == "__main__":
    raise SystemExit(agent_wrapper(sys.argv[1:]))
