"""How busy the rest of the machine was while a figure ran: every figure ends with this line.

The benchmark's own CPU (this process and every child, reaped ones included) is taken out of the
machine's busy time; what remains was used by processes that are not the benchmark's.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import psutil

from bench.proxy import cpu_stat


def own_ticks() -> int:
    """CPU ticks of this benchmark and every process it started (live ones, plus reaped ones)."""
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            data = Path(f"/proc/{proc.pid}/stat").read_bytes()
            f = data[data.rindex(b")") + 2 :].split()
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])  # utime stime cutime cstime
    return total


def foreign_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process that is not this benchmark's, with a short label."""
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.children(recursive=True))}
    out: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        if proc.pid in ours or proc.info["cpu_times"] is None:
            continue
        argv = proc.info["cmdline"]
        label = (" ".join([os.path.basename(argv[0]), *argv[1:3]]) if argv else f"[{proc.info['name']}]")[:48]
        out[proc.pid] = (label, proc.info["cpu_times"].user + proc.info["cpu_times"].system)
    return out


def _loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


class Noise:
    """Share of the machine's CPU used by processes that are not this benchmark's, over a window."""

    def __init__(self) -> None:
        self.all0 = cpu_stat(None)
        self.own0 = own_ticks()
        self.foreign0 = foreign_cpu()
        self.loadavg0 = _loadavg()
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, Any]:
        all1 = cpu_stat(None)
        own1 = own_ticks()
        foreign1 = foreign_cpu()
        wall = max(time.monotonic() - self.t0, 1e-3)
        busy = all1[0] - self.all0[0]
        total = max(all1[1] - self.all0[1], 1)
        by_label: dict[str, float] = {}
        for pid, (label, cpu) in foreign1.items():
            before = self.foreign0.get(pid)
            by_label[label] = by_label.get(label, 0.0) + cpu - (before[1] if before and before[0] == label else 0.0)
        return {
            "foreign_cpu_pct": round(max(0.0, busy - (own1 - self.own0)) / total * 100, 1),
            "machine_busy_pct": round(busy / total * 100, 1),
            "steal_pct": round((all1[2] - self.all0[2]) / total * 100, 1),
            "loadavg": f"{self.loadavg0} -> {_loadavg()}",
            "top_foreign": [
                [label, round(cpu / wall * 100, 1)]
                for label, cpu in sorted(by_label.items(), key=lambda kv: -kv[1])[:4]
                if cpu > 0.05 * wall
            ],
        }


def noise_line(n: dict[str, Any]) -> str:
    top = "; ".join(f"{label} {p:.0f} %" for label, p in n.get("top_foreign", []))
    return (
        f"noise: other processes used {n['foreign_cpu_pct']:.1f} % of the machine's CPU during this figure "
        f"(machine busy {n['machine_busy_pct']:.0f} %, steal {n['steal_pct']:.1f} %, 1-min load {n['loadavg']})"
        + (f"; busiest others (% of one CPU): {top}" if top else "")
    )
