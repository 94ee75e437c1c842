"""wrk with ``mix.lua``: the soak's request mix, or one fixed fast path, for a count or a time.

``run_wrk(limit=N)`` stops wrk after N responses (the script prints ``LIMIT_REACHED``; wrk's main
thread sleeps for ``-d``, so SIGINT ends it at once); the requests still in flight are abandoned.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.probe import LoadResult, parse_wrk, pin_prefix
from bench.proxy import Fail, _die_with_parent
from bench.reliability.harness import Ctx
from bench.reliability.upstream import FAST_PATH, SLOW_PREFIX

SCRIPT = Path(__file__).with_name("mix.lua")

# The bands mix.lua draws from, per mille (path, share, what the upstream answers).
SOAK_MIX = [
    ("GET /api/v1/users/{n}/orders/{hex12}", 650, "200 JSON"),
    ("GET /api/v1/users/{n}?page={n}", 50, "200 JSON"),
    ("POST /api/v1/users/{n}/orders (JSON body)", 50, "200 JSON"),
    ("GET /api/v1/items/{uuid}", 60, "404 JSON"),
    ("GET /pages/{n}/view", 40, "404 HTML"),
    ("GET /api/v1/reports/{n}", 40, "500 JSON"),
    ("GET /legacy/{hex20}/export", 40, "500 HTML"),
    ("GET /api/v1/search/{n}?delay_s=0.05", 50, "200 after 50 ms"),
    ("GET /scan/{6 letters} (word-like: fills metrics.max_routes)", 20, "404 HTML"),
]
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass
class WrkRun(LoadResult):
    """``bench.probe``'s wrk figures, plus the statuses the script counted and the socket errors by kind."""

    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)


def script_path(ctx: Ctx) -> Path:
    """mix.lua with this run's paths filled in, written once into the work dir."""
    path = ctx.workdir / "reliability.lua"
    if not path.exists():
        path.write_text(SCRIPT.read_text().replace("__FAST_PATH__", FAST_PATH).replace("__SLOW_PREFIX__", SLOW_PREFIX))
    return path


def run_wrk(
    ctx: Ctx,
    url: str,
    *,
    limit: int,
    seed: int,
    mode: str,
    connections: int,
    seconds: int,
    on_tick: Callable[[], None] | None = None,
) -> WrkRun:
    """wrk -t1, pinned to the load CPU; ``on_tick`` is called about once a second while it runs."""
    argv = [*pin_prefix(ctx.load_cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    argv += ["-s", str(script_path(ctx)), url, "--", str(limit), str(seed), mode]
    proc = ctx.children.popen(
        argv,
        cwd=ctx.workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None
    try:
        text = _read_all(proc, seconds + 30, on_tick).decode(errors="replace")
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            ctx.children.stop(proc)
        elif proc in ctx.children.procs:
            ctx.children.procs.remove(proc)
        proc.stdout.close()
    if proc.returncode not in (0, -signal.SIGINT):
        raise Fail(f"wrk exited {proc.returncode}:\n{text[-3000:]}")
    return parse_output(text)


def _read_all(proc: subprocess.Popen[bytes], timeout: float, on_tick: Callable[[], None] | None) -> bytes:
    """wrk's output up to EOF; SIGINT to wrk once the script says ``LIMIT_REACHED``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = bytearray()
    stopped = False
    deadline = time.monotonic() + timeout
    next_tick = time.monotonic() + 1.0
    while True:
        now = time.monotonic()
        if now > deadline:
            raise Fail(f"wrk did not finish within {timeout:.0f} s")
        if on_tick is not None and now >= next_tick:
            next_tick = now + 1.0
            on_tick()
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(out)
            out += chunk
            if not stopped and b"LIMIT_REACHED" in out:
                stopped = True
                proc.send_signal(signal.SIGINT)


def parse_output(text: str) -> WrkRun:
    """wrk's summary (``bench.probe.parse_wrk``) plus the script's statuses and the socket errors."""
    base = parse_wrk(text)
    statuses: dict[int, int] = {}
    if m := re.search(r"^STATUSES (\{.*\})$", text, re.MULTILINE):
        statuses = {int(k): v for k, v in json.loads(m.group(1)).items()}
    sock = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    if m := SOCKET_ERRORS.search(text):
        sock = dict(zip(sock, (int(x) for x in m.groups()), strict=True))
    return WrkRun(**asdict(base), statuses=statuses, socket_errors=sock)
