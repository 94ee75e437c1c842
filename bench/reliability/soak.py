"""Figure 1, soak: does anything in the agent grow with the number of requests it has served?

    python -m bench.reliability.soak [--soak-requests 1000000] [--soak-checkpoints 10] [--soak-connections 50]

wrk sends the mix of ``mix.lua`` (random ids in paths, random X-Request-IDs, 5 % invalid), split
into checkpoints after a warm-up; at each one: RSS, fds, sockets to the upstream, CLOSE-WAIT,
series, routes, in-flight. Verdict: RSS growth over the late half < max(5 MiB, 2 %).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.probe import CLK_TCK, cpu_ticks, rss_mib
from bench.proxy import progress
from bench.reliability import runner
from bench.reliability.harness import Agent, Ctx, start_agent, stop_agent
from bench.reliability.noise import Noise
from bench.reliability.report import Column, closing_lines, column_table, lsq_slope
from bench.reliability.sampling import agent_log_lines, log_problems, open_fds, scrape, ss_count, upstream_established
from bench.reliability.wrk import SOAK_MIX, WrkRun, run_wrk

MiB = 1024 * 1024
EXPECTED_STATUSES = {200, 404, 500}
TASKS_NOT_MEASURED = (
    "not measured: the agent exposes no task count (no endpoint or metric reads asyncio.all_tasks()); "
    "measuring it would need a change in agent/"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--soak-requests",
        type=runner.at_least(1000),
        default=1_000_000,
        help="proxied requests after the warm-up (default 1,000,000; at least 1,000)",
    )
    parser.add_argument(
        "--soak-checkpoints",
        type=runner.at_least(2),
        default=10,
        help="checkpoints (wrk runs) the soak is split into (default 10; at least 2)",
    )
    parser.add_argument("--soak-connections", type=int, default=50, help="wrk connections during the soak (default 50)")


class Segments:
    """Successive wrk runs against one agent, each stopped after a number of responses."""

    def __init__(self, ctx: Ctx, agent: Agent, connections: int) -> None:
        self.ctx, self.agent, self.connections = ctx, agent, connections
        self.statuses: Counter[int] = Counter()
        self.socket_errors = 0
        self.seed = 1

    def run(self, limit: int) -> tuple[WrkRun, float]:
        """One wrk run of ``limit`` responses; (its figures, the agent's CPU µs per request)."""
        self.seed += 1
        t0 = cpu_ticks(self.agent.pid)
        run = run_wrk(
            self.ctx, self.agent.url, limit=limit, seed=self.seed, mode="mix", connections=self.connections, seconds=3600
        )
        cpu_us = (cpu_ticks(self.agent.pid) - t0) / CLK_TCK * 1e6 / max(run.requests, 1)
        self.statuses.update(run.statuses)
        self.socket_errors += sum(run.socket_errors.values())
        self.agent.check_alive("the soak")
        return run, cpu_us


def checkpoint(ctx: Ctx, agent: Agent, label: str, requests: int, run: WrkRun | None, cpu_us: float | None) -> dict[str, Any]:
    rss = rss_mib(agent.pid)  # first: the scrape below allocates in the agent
    fds = open_fds(agent.pid)
    upstream = upstream_established(ctx)
    close_wait = ss_count(
        ["state", "close-wait", "(", "sport", "=", f":{agent.port}", "or", "dport", "=", f":{ctx.up_port}", ")"]
    )
    m = scrape(agent.admin_port)
    row = {
        "label": label,
        "requests": requests,
        "rss_mib": round(rss, 2),
        "fds_proc": fds,
        "process_open_fds": int(m.total("process_open_fds")),
        "metrics_rss_mib": round(m.total("process_resident_memory_bytes") / MiB, 2),
        "upstream_established": upstream,
        "close_wait": close_wait,
        "series": m.series,
        "routes": len({lab.get("route") for n, lab, _ in m.samples if n == "agent_http_requests_total"}),
        "in_flight": int(m.total("agent_http_requests_in_flight")),
        "agent_requests_total": int(m.total("agent_http_requests_total")),
        "upstream_errors": {k: int(v) for k, v in m.by("agent_upstream_errors_total", "reason").items()},
        "tasks": None,  # no way to read len(asyncio.all_tasks()) from outside without changing agent code
    }
    if run is not None:
        row |= {
            "rps": round(run.rps, 1),
            "p50_ms": run.p50_ms,
            "p99_ms": run.p99_ms,
            "unexpected_statuses": {s: n for s, n in run.statuses.items() if s not in EXPECTED_STATUSES},
            "socket_errors": sum(run.socket_errors.values()),
            "agent_cpu_us_per_req": round(cpu_us, 1) if cpu_us is not None else None,
        }
    progress(
        f"  {label}: {requests:,} req, RSS {rss:.1f} MiB, fds {fds}, upstream ESTAB {upstream}, series {m.series}"
        + (f", {run.rps:.0f} r/s" if run else "")
    )
    return row


def rss_verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS over the late half of the measured checkpoints: slope, growth, limit, PASS/FAIL."""
    measured = [r for r in rows if "segment" in r]
    late = measured[len(measured) // 2 - 1 :] if len(measured) >= 3 else measured
    if len(late) < 2:
        return {
            "rss_late_window": [0, 0],
            "rss_slope_mib_per_100k": 0.0,
            "rss_growth_late_mib": 0.0,
            "rss_threshold_mib": 0.0,
            "rss_verdict": "n/a (too few checkpoints)",
        }
    growth = late[-1]["rss_mib"] - late[0]["rss_mib"]
    threshold = max(5.0, 0.02 * late[0]["rss_mib"])
    return {
        "rss_late_window": [late[0]["requests"], late[-1]["requests"]],
        "rss_slope_mib_per_100k": round(lsq_slope([r["requests"] / 100_000 for r in late], [r["rss_mib"] for r in late]), 3),
        "rss_growth_late_mib": round(growth, 2),
        "rss_threshold_mib": round(threshold, 2),
        "rss_verdict": "PASS" if growth < threshold else "FAIL",
    }


def measure(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    total, n = args.soak_requests, args.soak_checkpoints
    per = max(1, total // n)
    noise = Noise()
    agent = start_agent(ctx, "soak", {})
    time.sleep(1.0)
    rows = [checkpoint(ctx, agent, "idle, 1 s after ready", 0, None, None)]
    segments = Segments(ctx, agent, args.soak_connections)
    warm = max(5000, total // 20)
    progress(f"soak: warm-up {warm:,} requests ...")
    run, cpu_us = segments.run(warm)
    rows.append(checkpoint(ctx, agent, "warm-up done", run.requests, run, cpu_us))
    time.sleep(args.settle_s)
    warm_done = run.requests
    rows.append(checkpoint(ctx, agent, f"baseline ({args.settle_s:.0f} s idle)", warm_done, None, None))
    done = 0
    started = time.monotonic()
    for i in range(n):
        limit = per if i < n - 1 else total - per * (n - 1)
        progress(f"soak: segment {i + 1}/{n} ({limit:,} requests) ...")
        run, cpu_us = segments.run(limit)
        done += run.requests
        rows.append(checkpoint(ctx, agent, f"soak +{done:,}", warm_done + done, run, cpu_us) | {"segment": i + 1})
    soak_s = time.monotonic() - started
    time.sleep(args.settle_s)
    rows.append(checkpoint(ctx, agent, f"after ({args.settle_s:.0f} s idle)", warm_done + done, None, None))
    problems = log_problems(agent_log_lines(agent.log))
    stop_agent(ctx, agent)
    result = summary(rows, segments, done, warm_done, soak_s, args.soak_connections) | {
        "agent_log_problems": dict(problems.most_common(8)),
        "noise": noise.stop(),
    }
    result["_table"] = render(result)
    return result


def summary(
    rows: list[dict[str, Any]], segments: Segments, done: int, warm_done: int, soak_s: float, connections: int
) -> dict[str, Any]:
    """The soak's figures from its checkpoints (rows[2] is the baseline, rows[-1] the reading after)."""
    baseline, after = rows[2], rows[-1]
    statuses = segments.statuses
    return {
        "requests": done,
        "warmup_requests": warm_done,
        "seconds": round(soak_s, 1),
        "rps_mean": round(done / soak_s, 1) if soak_s else None,
        "connections": connections,
        "checkpoints": rows,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "unexpected_responses": sum(statuses.values()) - sum(v for s, v in statuses.items() if s in EXPECTED_STATUSES),
        "socket_errors": segments.socket_errors,
        **rss_verdict(rows),
        "fds_delta_after_vs_baseline": after["fds_proc"] - baseline["fds_proc"],
        "upstream_established_after": after["upstream_established"],
        "close_wait_after": after["close_wait"],
        "in_flight_after": after["in_flight"],
        "series_delta_after_vs_baseline": after["series"] - baseline["series"],
        "tasks": TASKS_NOT_MEASURED,
    }


def _measured(key: str, fmt: str) -> Callable[[dict[str, Any]], str]:
    """A cell that only checkpoints after a wrk run have ("-" elsewhere)."""
    return lambda c: format(c[key], fmt) if c.get(key) is not None else "-"


COLUMNS: list[Column] = [
    ("checkpoint", lambda c: c["label"]),
    ("total requests", lambda c: f"{c['requests']:,}"),
    ("RSS MiB", lambda c: f"{c['rss_mib']:.1f}"),
    ("fds /proc", lambda c: str(c["fds_proc"])),
    ("open_fds metric", lambda c: str(c["process_open_fds"])),
    ("upstr ESTAB", lambda c: str(c["upstream_established"])),
    ("CLOSE-WAIT", lambda c: str(c["close_wait"])),
    ("series", lambda c: str(c["series"])),
    ("routes", lambda c: str(c["routes"])),
    ("in-flight", lambda c: str(c["in_flight"])),
    ("r/s", _measured("rps", ".0f")),
    ("p99 ms", _measured("p99_ms", ".1f")),
    ("agent µs/req", _measured("agent_cpu_us_per_req", ".0f")),
    ("unexpected", lambda c: str(sum(c["unexpected_statuses"].values()) + c["socket_errors"]) if "rps" in c else "-"),
]


def render(r: dict[str, Any]) -> str:
    w = r["rss_late_window"]
    return "\n".join(
        [
            f"== 1. Soak: {r['requests']:,} proxied requests after a {r['warmup_requests']:,}-request warm-up "
            f"(wrk -t1 -c{r['connections']}, Lua mix, random ids and X-Request-IDs), {r['seconds']:.0f} s, "
            f"{r['rps_mean']:,.0f} r/s mean",
            "   mix (per mille): " + "; ".join(f"{p} {n} -> {s}" for p, n, s in SOAK_MIX),
            "",
            *column_table(COLUMNS, r["checkpoints"]),
            "",
            f"RSS slope over the late checkpoints ({w[0]:,} -> {w[1]:,} total requests): "
            f"{r['rss_slope_mib_per_100k']:+.3f} MiB per 100k requests (least squares); "
            f"growth over that window {r['rss_growth_late_mib']:+.2f} MiB vs limit max(5 MiB, 2 %) = "
            f"{r['rss_threshold_mib']:.2f} MiB -> {r['rss_verdict']}",
            f"after idle vs baseline: fds {r['fds_delta_after_vs_baseline']:+d}, upstream ESTAB "
            f"{r['upstream_established_after']}, CLOSE-WAIT {r['close_wait_after']}, in-flight {r['in_flight_after']}, "
            f"series {r['series_delta_after_vs_baseline']:+d}",
            "statuses seen by wrk: "
            + ", ".join(f"{k}: {v:,}" for k, v in r["statuses"].items())
            + f"; unexpected (not 200/404/500): {r['unexpected_responses']}; socket errors: {r['socket_errors']}",
            f"asyncio tasks: {r['tasks']}",
            *closing_lines(r),
        ]
    )


FIGURE = runner.Figure("soak", __doc__, add_arguments, measure, has_after_readings=True)

if __name__ == "__main__":
    raise SystemExit(runner.main_alone(FIGURE))
