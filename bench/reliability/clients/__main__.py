"""Run one load generator: ``python -m bench.reliability.clients <json params>``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bench.reliability.clients import burst, keepalive, prober, trickle
from bench.reliability.harness import raise_fd_limit

MODES: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "sigterm": keepalive.run,
    "overload": burst.run,
    "probe": prober.run,
    "trickle": trickle.run,
}


def write_line(result: dict[str, Any]) -> None:
    """The result as one JSON line on stdout, all of it.

    One write() may be partial (a pipe holds 64 KiB; under PYTHONUNBUFFERED sys.stdout.buffer is
    the raw file): write in a loop so that the parent always gets every byte."""
    sys.stdout.flush()
    fd = sys.stdout.fileno()
    os.set_blocking(fd, True)
    view = memoryview(json.dumps(result, separators=(",", ":")).encode() + b"\n")
    while view:
        view = view[os.write(fd, view) :]


def main(argv: list[str] | None = None) -> int:
    params = json.loads((sys.argv[1:] if argv is None else argv)[0])
    raise_fd_limit()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(MODES[params["mode"]](params))
    write_line(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
