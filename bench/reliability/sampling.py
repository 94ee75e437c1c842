"""A running agent read from outside: /proc (fds, RSS), ``ss`` (sockets), ``/metrics``, its log.

Nothing here changes the agent; a scrape does allocate in it, so read RSS first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.probe import rss_mib
from bench.proxy import Fail, http_get
from bench.reliability.harness import Agent, Ctx

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
PROBLEM_LEVELS = ("WARNING", "ERROR", "CRITICAL", "RAW")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def ss_count(args: list[str]) -> int:
    """TCP sockets matching an ``ss`` filter (``ss -Htn <args>``)."""
    out = subprocess.run(["ss", "-Htn", *args], capture_output=True, text=True, timeout=10).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def upstream_established(ctx: Ctx) -> int:
    return ss_count(["state", "established", "dst", f"127.0.0.1:{ctx.up_port}"])


@dataclass
class Scrape:
    """One ``/metrics`` answer: the number of sample lines and the samples themselves."""

    series: int
    samples: list[tuple[str, dict[str, str], float]]

    def total(self, name: str, **labels: str) -> float:
        return sum(v for n, lab, v in self.samples if n == name and all(lab.get(k) == x for k, x in labels.items()))

    def by(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for n, lab, v in self.samples:
            if n == name:
                key = lab.get(label, "")
                out[key] = out.get(key, 0.0) + v
        return out


def scrape(admin_port: int) -> Scrape:
    got = http_get(admin_port, "/metrics", timeout=15)
    if got is None or got[0] != 200:
        raise Fail(f"admin /metrics answered {got[0] if got else 'nothing'}")
    samples = []
    for line in got[2].decode(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        samples.append((name, dict(_LABEL.findall(rest)), float(value)))
    return Scrape(len(samples), samples)


def agent_sample(ctx: Ctx, agent: Agent) -> dict[str, Any]:
    """fds, RSS, in-flight requests and established sockets on both sides of the agent."""
    m = scrape(agent.admin_port)
    return {
        "fds": open_fds(agent.pid),
        "rss_mib": round(rss_mib(agent.pid), 1),
        "in_flight": int(m.total("agent_http_requests_in_flight")),
        "upstream_established": upstream_established(ctx),
        "client_established": ss_count(["state", "established", "sport", "=", f":{agent.port}"]),
    }


# ------------------------------------------------------------------------------ the log
def parse_log_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def agent_log_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the agent's stdout: JSON lines parsed, anything else as a ``RAW`` line."""
    lines = []
    with log.open("rb") as f:
        for raw in f:
            if raw.startswith(b"{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(raw))
            else:
                lines.append({"level": "RAW", "message": raw.decode(errors="replace").rstrip()})
    return lines


def log_problems(lines: list[dict[str, Any]]) -> Counter[str]:
    """Warning/error messages (not access lines), counted by message."""
    out: Counter[str] = Counter()
    for line in lines:
        if line.get("logger") == "agent.access" or line.get("level") not in PROBLEM_LEVELS:
            continue
        code = f" ({line['error_code']})" if line.get("error_code") else ""
        out[f"{line.get('level')}: {line.get('message')}{code}"] += 1
    return out


def count_messages(lines: list[dict[str, Any]], message: str) -> int:
    return sum(1 for x in lines if x.get("message") == message)
