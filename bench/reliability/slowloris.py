"""Figure 4, slow-loris and slow bodies: does normal traffic keep flowing past 1,000 tricklers?

    python -m bench.reliability.slowloris [--trickle-seconds 25] [--trickle-wrk-connections 32] [--no-trickle-split]

``header_timeout_s = body_timeout_s = 10``; wrk on a fast path without trickle, then with 500
connections sending one head byte per second and 500 sending a full head with
``Content-Length: 1000000`` then one body byte per second (a cut one reconnects at once), then
each kind alone. Normal r/s and errors; the agent's peak fds, in-flight and upstream connections
and the values after idle; per trickler kind: opened, cut, how, time from first byte to cut.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time
from typing import Any

from bench.proxy import progress
from bench.reliability import runner
from bench.reliability.harness import Agent, Ctx, finish_child, last_json, read_until, spawn_client, start_agent, stop_agent
from bench.reliability.noise import Noise
from bench.reliability.report import Column, closing_lines, column_table, fmt_counts, fmt_s, table
from bench.reliability.sampling import Scrape, agent_log_lines, agent_sample, count_messages, log_problems, scrape
from bench.reliability.upstream import FAST_PATH
from bench.reliability.wrk import run_wrk

TIMEOUT_S = 10.0
TRICKLERS = 500  # of each kind
PEAKS = ("fds", "in_flight", "upstream_established", "client_established")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trickle-seconds", type=int, default=25, help="wrk duration per slow-loris phase (default 25)")
    parser.add_argument("--trickle-wrk-connections", type=int, default=32, help="wrk connections for normal traffic (default 32)")
    parser.add_argument(
        "--no-trickle-split", dest="trickle_split", action="store_false", help="skip the header-only and body-only trickle phases"
    )


def measure(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    noise = Noise()
    agent = start_agent(ctx, "slowloris", {"proxy": {"header_timeout_s": TIMEOUT_S, "body_timeout_s": TIMEOUT_S}})
    phases = [("no trickle", 0, 0), (f"{TRICKLERS} header + {TRICKLERS} body trickle", TRICKLERS, TRICKLERS)]
    if args.trickle_split:
        phases += [(f"{TRICKLERS} header trickle only", TRICKLERS, 0), (f"{TRICKLERS} body trickle only", 0, TRICKLERS)]
    before = agent_sample(ctx, agent)
    out_phases = [run_phase(ctx, agent, args, label, n_header, n_body) for label, n_header, n_body in phases]
    lines = agent_log_lines(agent.log)
    stop_agent(ctx, agent)
    result = {
        "header_timeout_s": TIMEOUT_S,
        "body_timeout_s": TIMEOUT_S,
        "min_body_rate_bytes_s": 1024.0,
        "upstream_max_connections": 100,
        "wrk_connections": args.trickle_wrk_connections,
        "seconds": args.trickle_seconds,
        "before": before,
        "phases": out_phases,
        "agent_log_head_deadline_cuts": count_messages(lines, "request head deadline passed: closing"),
        "agent_log_body_cuts": count_messages(lines, "request body too slow: closing"),
        "agent_log_problems": dict(log_problems(lines).most_common(8)),
        "noise": noise.stop(),
    }
    result["_table"] = render(result)
    return result


def start_tricklers(ctx: Ctx, agent: Agent, seconds: int, n_header: int, n_body: int) -> subprocess.Popen[bytes]:
    params = {
        "mode": "trickle",
        "port": agent.port,
        "n_header": n_header,
        "n_body": n_body,
        "ramp_s": 2.0,
        "max_s": 2.0 + seconds + 60,
        "reconnect": True,
    }
    proc = spawn_client(ctx, params, f"trickle-{n_header}-{n_body}")
    read_until(proc, b"RAMPED", 60.0)
    return proc


def run_phase(ctx: Ctx, agent: Agent, args: argparse.Namespace, label: str, n_header: int, n_body: int) -> dict[str, Any]:
    """wrk's normal traffic for ``--trickle-seconds`` while the tricklers (if any) run."""
    seconds = args.trickle_seconds
    progress(f"slowloris: {label}: wrk -c{args.trickle_wrk_connections} {seconds} s ...")
    m0 = scrape(agent.admin_port)
    trickle = start_tricklers(ctx, agent, seconds, n_header, n_body) if n_header or n_body else None
    peak = dict.fromkeys(PEAKS, 0)

    def tick() -> None:
        sample = agent_sample(ctx, agent)
        for k in peak:
            peak[k] = max(peak[k], sample[k])

    run = run_wrk(
        ctx, agent.url, limit=0, seed=7, mode="fixed", connections=args.trickle_wrk_connections, seconds=seconds, on_tick=tick
    )
    trick = None
    if trickle is not None:
        trickle.send_signal(signal.SIGINT)
        trick = last_json(finish_child(ctx, trickle, 60), "trickle client")
    m1 = scrape(agent.admin_port)
    time.sleep(args.settle_s)
    after = agent_sample(ctx, agent)
    agent.check_alive(repr(label))
    return {
        "label": label,
        "n_header": n_header,
        "n_body": n_body,
        "rps": round(run.rps, 1),
        "p50_ms": run.p50_ms,
        "p99_ms": run.p99_ms,
        "requests": run.requests,
        "non_2xx": {str(s): n for s, n in run.statuses.items() if not 200 <= s < 300},
        "socket_errors": run.socket_errors,
        "peak": peak,
        "after_settle": after,
        "trickle": trick,
        "agent_status_delta": delta(m0, m1, "agent_http_requests_total", "status"),
        "upstream_errors_delta": delta(m0, m1, "agent_upstream_errors_total", "reason"),
    }


def delta(before: Scrape, after: Scrape, name: str, label: str) -> dict[str, int]:
    """The counter ``name`` by ``label`` between two scrapes, the labels that moved only."""
    old = before.by(name, label)
    return {k: int(v - old.get(k, 0)) for k, v in after.by(name, label).items() if v - old.get(k, 0)}


def _after_settle(p: dict[str, Any]) -> str:
    a = p["after_settle"]
    return f"{a['fds']} / {a['in_flight']} / {a['upstream_established']}"


PHASE_COLUMNS: list[Column] = [
    ("phase", lambda p: p["label"]),
    ("normal r/s", lambda p: f"{p['rps']:.0f}"),
    ("p50 ms", lambda p: f"{p['p50_ms']:.2f}"),
    ("p99 ms", lambda p: f"{p['p99_ms']:.2f}"),
    ("non-2xx", lambda p: fmt_counts(p["non_2xx"]) or "0"),
    ("socket errs", lambda p: str(sum(p["socket_errors"].values()))),
    ("agent fds peak", lambda p: str(p["peak"]["fds"])),
    ("in-flight peak", lambda p: str(p["peak"]["in_flight"])),
    ("upstr ESTAB peak", lambda p: str(p["peak"]["upstream_established"])),
    ("after settle: fds / in-flight / upstr", _after_settle),
]
CUT_HEADER = (
    "phase / trickler",
    "opened",
    "cut",
    "how cut",
    "first byte -> cut s (min / p50 / max)",
    "first cut s after start",
    "max open",
    "connect errs",
)


def cut_rows(p: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per trickler kind that opened connections in phase ``p``."""
    t = p["trickle"]
    if not t:
        return []
    rows: list[tuple[str, ...]] = []
    for kind in ("header", "body"):
        k = t["kinds"].get(kind)
        if not k or not k["opened"]:
            continue
        c = k["cut_after_s"]
        rows.append(
            (
                f"{p['label']} / {kind}",
                str(k["opened"]),
                str(k["cut"]),
                fmt_counts(k["how"]),
                f"{fmt_s(c['min'])} / {fmt_s(c['p50'])} / {fmt_s(c['max'])}",
                fmt_s(k["first_cut_s"]),
                str(t["max_open"]),
                str(k["connect_errors"]),
            )
        )
    return rows


def render(r: dict[str, Any]) -> str:
    b = r["before"]
    return "\n".join(
        [
            f"== 4. Slow-loris and slow body: header_timeout_s = body_timeout_s = {r['header_timeout_s']:g} "
            f"(min_body_rate {r['min_body_rate_bytes_s']:g} B/s, upstream.max_connections {r['upstream_max_connections']}); "
            f"normal traffic: wrk -t1 -c{r['wrk_connections']} -d{r['seconds']}s GET {FAST_PATH}; "
            "tricklers: header = 1 request-head byte/s, body = full head with Content-Length: 1000000 then 1 body byte/s; "
            "a cut trickler reconnects at once",
            "",
            *column_table(PHASE_COLUMNS, r["phases"]),
            f"agent before any phase: fds {b['fds']}, in-flight {b['in_flight']}, upstream ESTAB {b['upstream_established']}",
            "",
            *table(CUT_HEADER, [row for p in r["phases"] for row in cut_rows(p)]),
            *(
                f"{p['label']}: agent statuses during the phase {fmt_counts(p['agent_status_delta'])}; "
                f"upstream errors {fmt_counts(p['upstream_errors_delta']) or '0'}"
                for p in r["phases"]
                if p["trickle"]
            ),
            f"agent log: {r['agent_log_head_deadline_cuts']} 'request head deadline passed', "
            f"{r['agent_log_body_cuts']} 'request body too slow' lines",
            *closing_lines(r),
        ]
    )


FIGURE = runner.Figure("slowloris", __doc__, add_arguments, measure, has_after_readings=True)

if __name__ == "__main__":
    raise SystemExit(runner.main_alone(FIGURE))
