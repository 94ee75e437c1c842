"""Latency at a constant request rate: what the agent adds over a direct request, beside HAProxy.

    python -m bench.latency [--seconds 10] [--runs 3] [--rates 1000,5000]

Starts the same upstream nginx, agent, HAProxy and nginx proxy as ``bench.proxy`` (its functions and
configs, its pre-check), then offers each of them and the upstream directly a fixed request rate
with h2load (``--h1 --rps``, one keep-alive connection per h2load process, ``--log-file`` for every
request's latency in µs) and reports p50, p99 and p99.9, and each proxy's added latency over the
direct row. The proxy under test is pinned to one CPU, the upstream and h2load to another; targets
are interleaved within rounds and every number is the median over rounds. Prints a table and, as
the very last line, one JSON object with every number. See bench/README.md.

Everything listens on 127.0.0.1; every wait is bounded; every child process is stopped on exit,
including on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so ``tests.support`` and ``bench`` import when run from elsewhere
    sys.path.insert(0, str(REPO_ROOT))

from bench import proxy  # noqa: E402
from bench.probe import CLK_TCK, Children, pin_prefix  # noqa: E402
from bench.table import grid, num  # noqa: E402

PER_CLIENT_RPS = 250  # each keep-alive connection sends one request every 4 ms
H2LOAD_WARMUP_S = 1  # per run, at the run's rate, not in the percentiles
TARGET_RATE = 1000
TARGET_ADDED_MS = {"p50": 0.2, "p99": 0.6}  # the issue: agent adds <= 0.2 ms at p50, <= 0.6 ms at p99 at 1,000 rps
PERCENTILES = {"p50": 50.0, "p99": 99.0, "p99.9": 99.9}
TARGET_KEYS = ("direct", "agent", "haproxy", "nginx")  # bench.proxy's row keys, the baseline first


# --------------------------------------------------------------------- pure helpers
def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest rank: the smallest value with at least ``pct`` % of the values at or below it."""
    if not sorted_values:
        raise ValueError("no values")
    rank = math.ceil(round(pct * len(sorted_values) / 100, 6))  # round: 99.9 / 100 * 1000 is 999.0000000000001
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def latency_percentiles(latencies_us: list[int]) -> dict[str, float]:
    """p50, p99, p99.9 in ms of per-request latencies in µs."""
    ordered = sorted(latencies_us)
    return {name: percentile(ordered, pct) / 1000 for name, pct in PERCENTILES.items()}


def added_over(row: dict[str, float], direct: dict[str, float]) -> dict[str, float]:
    """Per percentile: row - direct (ms)."""
    return {name: row[name] - direct[name] for name in PERCENTILES}


def plan_clients(rate: int) -> tuple[int, float]:
    """(connections, requests/s each) adding up to ``rate``, each near PER_CLIENT_RPS."""
    clients = max(1, round(rate / PER_CLIENT_RPS))
    return clients, rate / clients


def parse_log(text: str) -> tuple[list[int], int]:
    """h2load ``--log-file`` (start µs since epoch, status, µs to end of response): the latencies
    of the 2xx responses, and how many requests failed (status -1) or were not 2xx."""
    latencies, errors = [], 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        if 200 <= int(parts[1]) < 300:
            latencies.append(int(parts[2]))
        else:
            errors += 1
    return latencies, errors


def parse_summary(text: str) -> int:
    """Failed, errored and timed-out requests and non-2xx responses from h2load's summary."""
    for line in text.splitlines():
        if line.startswith("requests:"):
            words = line.replace(",", "").split()
            counts = {words[i + 1]: int(words[i]) for i in range(1, len(words) - 1, 2)}
            return counts.get("failed", 0) + counts.get("errored", 0) + counts.get("timeout", 0)
    raise ValueError(f"h2load printed no summary:\n{text[-2000:]}")


# ---------------------------------------------------------------------- load runs
@dataclass
class Target:
    key: str
    name: str
    port: int
    service: proxy.Service | None  # whose CPU is counted; None for direct


@dataclass
class Run:
    rate: float  # achieved: measured requests / seconds
    percentiles: dict[str, float]
    proxy_cpu_pct: float | None
    proxy_cpu_other_pct: float  # busy on the proxy's CPU not charged to the proxy: other work, interrupts
    load_cpu_busy_pct: float
    errors: int
    requests: int


@dataclass
class Cell:
    """One target at one offered rate."""

    target: Target
    rate: int
    runs: list[Run] = field(default_factory=list)


def h2load_argv(url: str, rps: float, seconds: int, log: Path) -> list[str]:
    return [
        "h2load", "--h1", "-c", "1", "--rps", f"{rps:g}", "-D", str(seconds), "--warm-up-time", str(H2LOAD_WARMUP_S),
        "--log-file", str(log), url,
    ]  # fmt: skip


def offer(children: Children, url: str, rate: int, seconds: int, cpu: int | None, logdir: Path) -> tuple[list[int], int]:
    """``rate`` requests/s for ``seconds`` s over keep-alive connections, one h2load per
    connection, started a fraction of the per-connection interval apart so that their requests
    interleave instead of arriving in bursts. Returns (latencies µs, errors)."""
    clients, rps = plan_clients(rate)
    procs = []
    for i in range(clients):
        log = logdir / f"h2load-{i}.log"
        argv = pin_prefix(cpu) + h2load_argv(url, rps, seconds, log)
        proc = children.popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=proxy._die_with_parent
        )
        procs.append((log, proc))
        time.sleep(1 / rps / clients)
    latencies, errors = [], 0
    deadline = time.monotonic() + H2LOAD_WARMUP_S + seconds + 30
    try:
        for log, proc in procs:
            text = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))[0].decode(errors="replace")
            if proc.returncode != 0:
                raise proxy.Fail(f"h2load exited {proc.returncode}:\n{text[-2000:]}")
            got, failed = parse_log(log.read_text())
            latencies += got
            errors += max(failed, parse_summary(text))
    except subprocess.TimeoutExpired as exc:
        raise proxy.Fail(f"h2load did not finish within {seconds + 30} s") from exc
    finally:
        for _, proc in procs:
            children.stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()
    return latencies, errors


def measure(bench: proxy.Bench, cell: Cell, seconds: int) -> Run:
    pids = cell.target.service.pids if cell.target.service else []
    logdir = Path(tempfile.mkdtemp(prefix="h2load-", dir=bench.workdir))
    p0, c0, l0 = proxy.tree_ticks(pids), proxy.cpu_stat(bench.proxy_cpu), proxy.cpu_stat(bench.load_cpu)
    started = time.monotonic()
    url = f"http://127.0.0.1:{cell.target.port}{proxy.PATH}"
    latencies, errors = offer(bench.children, url, cell.rate, seconds, bench.load_cpu, logdir)
    wall = time.monotonic() - started
    p1, c1, l1 = proxy.tree_ticks(pids), proxy.cpu_stat(bench.proxy_cpu), proxy.cpu_stat(bench.load_cpu)
    shutil.rmtree(logdir, ignore_errors=True)
    if not latencies:
        raise proxy.Fail(f"{cell.target.name} at {cell.rate} r/s: no successful request ({errors} errors)")
    return Run(
        rate=len(latencies) / seconds,
        percentiles=latency_percentiles(latencies),
        # Over the whole h2load run (its warm-up second is at the same rate).
        proxy_cpu_pct=(p1 - p0) / CLK_TCK / wall * 100 if pids else None,
        proxy_cpu_other_pct=max(0, (c1[0] - c0[0]) - (p1 - p0)) / max(c1[1] - c0[1], 1) * 100,
        load_cpu_busy_pct=(l1[0] - l0[0]) / max(l1[1] - l0[1], 1) * 100,
        errors=errors,
        requests=len(latencies),
    )


# ---------------------------------------------------------------------- set-up
def start_targets(bench: proxy.Bench) -> list[Target]:
    """bench.proxy's HTTP rows (started and pre-checked by it), less its /health/ready row."""
    rows = {row.key: row for row in proxy.start_http_rows(bench).rows}
    return [Target(key, rows[key].name, rows[key].port, rows[key].service) for key in TARGET_KEYS if key in rows]


def measure_rounds(bench: proxy.Bench, cells: list[Cell], runs: int, seconds: int) -> None:
    """Every round: each rate, each target once (targets interleaved, the same order every round)."""
    for round_no in range(1, runs + 1):
        for cell in cells:
            proxy.progress(f"round {round_no}/{runs}: {cell.target.name} at {cell.rate} r/s ...")
            cell.runs.append(measure(bench, cell, seconds))
            for service in bench.services:
                if not service.alive():
                    raise proxy.Fail(f"{service.name} died during {cell.target.name!r} (exit {service.proc.returncode})")


# ---------------------------------------------------------------------- results
def summarize(cell: Cell) -> dict[str, Any]:
    med = statistics.median
    cpu = [r.proxy_cpu_pct for r in cell.runs if r.proxy_cpu_pct is not None]
    return {
        "key": cell.target.key,
        "name": cell.target.name,
        "offered_rps": cell.rate,
        "achieved_rps_runs": [round(r.rate, 1) for r in cell.runs],
        "achieved_rps": round(med(r.rate for r in cell.runs), 1),
        **{f"{name}_ms": round(med(r.percentiles[name] for r in cell.runs), 3) for name in PERCENTILES},
        **{f"{name}_ms_runs": [round(r.percentiles[name], 3) for r in cell.runs] for name in PERCENTILES},
        "proxy_cpu_pct": round(med(cpu), 1) if cpu else None,
        "proxy_cpu_other_pct_max": round(max(r.proxy_cpu_other_pct for r in cell.runs), 1),
        "load_cpu_busy_pct": round(med(r.load_cpu_busy_pct for r in cell.runs), 1),
        "errors": sum(r.errors for r in cell.runs),
        "requests": sum(r.requests for r in cell.runs),
    }


def add_added(rows: list[dict[str, Any]]) -> None:
    """Each row's ``added_*_ms``: its median percentile - the direct row's, at the same rate."""
    direct = {r["offered_rps"]: r for r in rows if r["key"] == "direct"}
    for r in rows:
        base = direct[r["offered_rps"]]
        diff = added_over({n: r[f"{n}_ms"] for n in PERCENTILES}, {n: base[f"{n}_ms"] for n in PERCENTILES})
        for name, value in diff.items():
            r[f"added_{name}_ms"] = None if r["key"] == "direct" else round(value, 3)


def target_check(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's line at TARGET_RATE: the agent's added p50 and p99 against their limits, HAProxy's beside."""
    at = {r["key"]: r for r in rows if r["offered_rps"] == TARGET_RATE}
    if "agent" not in at:
        return {"rate": TARGET_RATE, "measured": False}
    agent = {name: at["agent"][f"added_{name}_ms"] for name in TARGET_ADDED_MS}
    return {
        "rate": TARGET_RATE,
        "measured": True,
        "limits_ms": TARGET_ADDED_MS,
        "agent_added_ms": agent,
        "haproxy_added_ms": {name: at["haproxy"][f"added_{name}_ms"] for name in TARGET_ADDED_MS} if "haproxy" in at else None,
        "met": all(agent[name] <= limit for name, limit in TARGET_ADDED_MS.items()),
    }


def render(meta: dict[str, Any], rows: list[dict[str, Any]], target: dict[str, Any], noise: dict[str, Any]) -> str:
    lines = [
        f"sidecar-agent latency at a constant rate — {meta['runs']} interleaved rounds, {meta['seconds']} s per run "
        f"(+{H2LOAD_WARMUP_S} s warm-up), GET {proxy.PATH} -> nginx static JSON",
        f"load: {meta['loadgen']}; proxy under test on CPU {meta['proxy_cpu']}, upstream nginx + h2load on CPU "
        f"{meta['load_cpu']}; {meta['cpus']} CPUs; Python {meta['python']} ({meta['event_loop']}); agent "
        f"{meta['agent_version']}; {meta['haproxy']}; {meta['nginx']}",
        "",
    ]
    header = ("target", "offered r/s", "achieved r/s", "p50 ms", "p99 ms", "p99.9 ms", "+p50 ms", "+p99 ms", "+p99.9 ms",
              "proxy CPU%", "proxy-CPU other%", "load-CPU busy%", "errors")  # fmt: skip
    body = [
        (r["name"], f"{r['offered_rps']:,}", f"{r['achieved_rps']:,.0f}",
         *(f"{r[f'{n}_ms']:.3f}" for n in PERCENTILES), *(num(r[f"added_{n}_ms"], "+.3f") for n in PERCENTILES),
         num(r["proxy_cpu_pct"], ".0f"), f"{r['proxy_cpu_other_pct_max']:.0f}", f"{r['load_cpu_busy_pct']:.0f}", str(r["errors"]))
        for r in rows
    ]  # fmt: skip
    lines += [*grid(header, body), "", target_line(target)]
    lines.append(
        f"noise: loadavg {noise['loadavg_before']} -> {noise['loadavg_after']}; the same machine may run other work, "
        "so compare rows of one run only"
    )
    return "\n".join(lines)


def target_line(t: dict[str, Any]) -> str:
    if not t["measured"]:
        return f"target: agent adds ≤ 0.2 ms at p50 and ≤ 0.6 ms at p99 at {TARGET_RATE:,} rps: not measured (not in --rates)"
    a, h = t["agent_added_ms"], t["haproxy_added_ms"]
    hap = "HAProxy not installed" if h is None else f"HAProxy adds {h['p50']:+.3f} ms at p50, {h['p99']:+.3f} ms at p99"
    return (
        f"target: agent adds ≤ 0.2 ms at p50 and ≤ 0.6 ms at p99 at {TARGET_RATE:,} rps: "
        f"agent adds {a['p50']:+.3f} ms at p50, {a['p99']:+.3f} ms at p99 — {'met' if t['met'] else 'NOT met'} ({hap})"
    )


# ---------------------------------------------------------------------- main
def run(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    proxy_cpu, load_cpu = proxy.plan_cpus()
    have_haproxy = shutil.which("haproxy") is not None
    # bench.proxy's row set-up wants its own options; its load generator is never run here.
    proxy_args = argparse.Namespace(loadgen="python", connections=1, seconds=args.seconds)
    bench = proxy.Bench(
        proxy_args, children, workdir, proxy_cpu, load_cpu, proxy.security_header_values(), have_haproxy,
        proxy.agent_hsts_value(),
    )  # fmt: skip
    loadavg_before = Path("/proc/loadavg").read_text().split()[0]
    targets = start_targets(bench)
    cells = [Cell(target, rate) for rate in args.rates for target in targets]
    measure_rounds(bench, cells, args.runs, args.seconds)
    rows = [summarize(cell) for cell in cells]
    add_added(rows)
    meta = {
        "seconds": args.seconds,
        "runs": args.runs,
        "rates": args.rates,
        "loadgen": f"h2load --h1 --rps, {PER_CLIENT_RPS} r/s per keep-alive connection, one h2load per connection "
        f"({_version(['h2load', '--version'])})",
        "proxy_cpu": proxy_cpu if proxy_cpu is not None else "unpinned",
        "load_cpu": load_cpu if load_cpu is not None else "unpinned",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "event_loop": proxy._event_loop(),
        "agent_version": proxy._agent_version(),
        "haproxy": proxy._version(["haproxy", "-v"]) if have_haproxy else "HAProxy not installed",
        "nginx": proxy._version(["nginx", "-v"]),
        "path": proxy.PATH,
    }
    target = target_check(rows)
    noise = {"loadavg_before": loadavg_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[0]}
    return {"bench": "sidecar-agent/latency", "meta": meta, "rows": rows, "target": target, "noise": noise,
            "_table": render(meta, rows, target, noise)}  # fmt: skip


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_rates(text: str) -> list[int]:
    rates = [int(part) for part in text.split(",") if part.strip()]
    if not rates or min(rates) < 1:
        raise argparse.ArgumentTypeError("--rates: comma-separated positive integers, e.g. 1000,5000")
    return rates


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured duration of each run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds: each target and rate once per round (default 3)")
    parser.add_argument("--rates", type=parse_rates, default=[1000, 5000], help="offered requests/s (default 1000,5000)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (configs, logs) for inspection")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.runs < 1:
        parser.error("--seconds and --runs must be >= 1")
    for tool in ("h2load", "nginx"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is needed: apt-get install -y nghttp2-client nginx")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = proxy.run_guarded("bench-latency-", args.keep_workdir, lambda children, workdir: run(args, children, workdir))
    if isinstance(result, int):
        return result
    print(result.pop("_table"))
    bad = [f"{r['name']} at {r['offered_rps']}" for r in result["rows"] if r["errors"]]
    if bad:
        print(f"WARNING: errors during the measured runs of: {', '.join(bad)}", file=sys.stderr)
    line = json.dumps(result, separators=(",", ":"))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
