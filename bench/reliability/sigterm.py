"""Figure 2, SIGTERM during sustained load: does any request the agent accepted fail in the drain?

    python -m bench.reliability.sigterm [--sigterm-connections 50] [--sigterm-before-s 3]

Keep-alive clients (half fast, half 200 ms requests) and a readiness poller run against the
agent; SIGTERM; the clients go on until the first non-200 readiness + the drain delay, as a load
balancer would. Requests are grouped by start time against the agent's "closing listeners" log
line; the analysis of the records is in ``drain_records``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from typing import Any

from bench.proxy import progress
from bench.reliability import runner
from bench.reliability.drain_records import analyse
from bench.reliability.harness import Agent, Ctx, finish_child, last_json, read_until, spawn_client, start_agent
from bench.reliability.noise import Noise
from bench.reliability.report import Column, closing_lines, column_table, fmt_counts, fmt_s
from bench.reliability.sampling import agent_log_lines, count_messages, log_problems, parse_log_time

DRAIN_DELAY_S = 2.0
SHUTDOWN_TIMEOUT_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sigterm-connections", type=int, default=50, help="keep-alive clients in the SIGTERM figure (default 50)"
    )
    parser.add_argument("--sigterm-before-s", type=float, default=3.0, help="load before SIGTERM is sent (default 3)")


def measure(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    noise = Noise()
    agent = start_agent(ctx, "sigterm", {"server": {"drain_delay_s": DRAIN_DELAY_S, "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S}})
    data, t_sig, exit_s, code = sigterm_under_load(ctx, agent, args)
    (ctx.workdir / "sigterm" / "client-records.json").write_text(json.dumps({**data, "t_sigterm": t_sig}))
    lines = agent_log_lines(agent.log)
    t_close = next(
        (parse_log_time(x["timestamp"]) for x in lines if x.get("message") == "drain delay over: closing listeners"), None
    )
    close_at = t_close if t_close is not None else t_sig + DRAIN_DELAY_S
    reached = {x.get("request_id") for x in lines if x.get("logger") == "agent.access"}
    ready = data["ready"]  # [t, latency, status]
    first_503 = next((t for t, _, s in ready if t >= t_sig and s != 200), None)
    last_ready_200 = max((t for t, _, s in ready if s == 200), default=None)
    result = {
        "drain_delay_s": DRAIN_DELAY_S,
        "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S,
        "connections": args.sigterm_connections,
        "exit_code": code,
        "sigterm_to_exit_s": round(exit_s, 3) if exit_s is not None else None,
        "agent_reported_shutdown_s": next((x.get("shutdown_s") for x in lines if x.get("message") == "agent stopped"), None),
        "sigterm_to_listener_close_s": round(t_close - t_sig, 3) if t_close else None,
        "sigterm_to_first_ready_503_s": round(first_503 - t_sig, 3) if first_503 else None,
        "last_ready_200_after_sigterm_s": round(last_ready_200 - t_sig, 3) if last_ready_200 else None,
        "clients_stopped_after_sigterm_s": round(data["stop_at"] - t_sig, 3) if data.get("stop_at") else None,
        **analyse(data["records"], reached, t_sig, close_at),
        "aborted_at_shutdown_deadline": count_messages(lines, "request still running at shutdown deadline: aborted"),
        "agent_log_problems": dict(log_problems(lines).most_common(8)),
        "noise": noise.stop(),
    }
    result["_table"] = render(result)
    return result


def sigterm_under_load(
    ctx: Ctx, agent: Agent, args: argparse.Namespace
) -> tuple[dict[str, Any], float, float | None, int | None]:
    """SIGTERM while the clients run; (their records, SIGTERM wall time, seconds to exit, exit code)."""
    params = {
        "mode": "sigterm",
        "port": agent.port,
        "connections": args.sigterm_connections,
        "slow_delay_s": 0.2,
        "drain_delay_s": DRAIN_DELAY_S,
        "poll_s": 0.05,
        "max_s": args.sigterm_before_s + DRAIN_DELAY_S + SHUTDOWN_TIMEOUT_S + 30,
    }
    progress(f"sigterm: {args.sigterm_connections} keep-alive clients, half fast, half 200 ms ...")
    client = spawn_client(ctx, params, "sigterm")
    read_until(client, b"STARTED", 30.0)
    time.sleep(args.sigterm_before_s)
    t_sig = time.time()
    t0 = time.monotonic()
    os.kill(agent.pid, signal.SIGTERM)
    exit_s: float | None
    try:
        agent.proc.wait(timeout=DRAIN_DELAY_S + SHUTDOWN_TIMEOUT_S + 20)
        exit_s, code = time.monotonic() - t0, agent.proc.returncode
    except subprocess.TimeoutExpired:
        exit_s, code = None, None
        ctx.children.stop(agent.proc)
    if agent.proc in ctx.children.procs:
        ctx.children.procs.remove(agent.proc)
    progress(f"sigterm: agent exited {code} after {exit_s} s; waiting for the clients ...")
    data = last_json(finish_child(ctx, client, params["max_s"] + 30), "sigterm client")
    return data, t_sig, exit_s, code


COLUMNS: list[Column] = [
    ("phase (by request start)", lambda p: p["phase"]),
    ("requests", lambda p: str(p["requests"])),
    ("reached agent", lambda p: str(p["reached_agent"])),
    ("2xx", lambda p: str(p["ok_2xx"])),
    ("non-2xx", lambda p: fmt_counts(p["non_2xx"]) or "0"),
    ("conn errors, reached agent", lambda p: fmt_counts(p["errors_reached_agent"]) or "0"),
    ("conn errors, never reached agent", lambda p: fmt_counts(p["errors_never_reached_agent"]) or "0"),
    ("200 ms ones", lambda p: str(p["slow"])),
    ("new conns", lambda p: str(p["new_connections"])),
    ("Connection: close", lambda p: str(p["connection_close_responses"])),
]


def render(r: dict[str, Any]) -> str:
    at_sig, at_close = r["in_flight_at_sigterm"], r["in_flight_at_listener_close"]
    kinds = r["failed_started_before_close_kinds"]
    return "\n".join(
        [
            f"== 2. SIGTERM during sustained load: {r['connections']} keep-alive clients (half send fast requests back "
            "to back, half 200 ms ones), "
            f"drain_delay_s = {r['drain_delay_s']:g}, shutdown_timeout_s = {r['shutdown_timeout_s']:g}; clients stop "
            "starting requests at (first readiness 503 seen) + drain delay, like a load balancer",
            "",
            *column_table(COLUMNS, [{"phase": name, **p} for name, p in r["phases"].items()]),
            "",
            f"failed requests among the {r['requests_started_before_listener_close']} started before the listener "
            f"closed, counting non-2xx and connection errors of requests that reached the agent: "
            f"{r['failed_accepted_requests']} (target 0); in flight at SIGTERM: {at_sig['n']} ({at_sig['failed']} "
            f"failed); in flight when the listener closed: {at_close['n']} ({at_close['failed']} failed); connection "
            f"errors on requests that never reached the agent: {r['never_reached_agent']}",
            f"strict count (every request started before the listener closed that did not get a 2xx, whether it "
            f"reached the agent or not): {r['failed_started_before_close_any_reason']}"
            + (f" — {fmt_counts(kinds)}" if kinds else ""),
            *(f"  never reached the agent: {ex}" for ex in r["never_reached_examples"]),
            *(f"  failed: {ex}" for ex in r["failed_examples"]),
            f"exit code {r['exit_code']}; SIGTERM -> exit {fmt_s(r['sigterm_to_exit_s'])} (agent's own shutdown_s "
            f"{r['agent_reported_shutdown_s']}); SIGTERM -> listener closed {fmt_s(r['sigterm_to_listener_close_s'])}; "
            f"SIGTERM -> first /health/ready 503 seen {fmt_s(r['sigterm_to_first_ready_503_s'])} (polled every 50 ms); "
            f"clients stopped {fmt_s(r['clients_stopped_after_sigterm_s'])} after SIGTERM; "
            f"requests aborted at the shutdown deadline: {r['aborted_at_shutdown_deadline']}",
            *closing_lines(r),
        ]
    )


FIGURE = runner.Figure("sigterm", __doc__, add_arguments, measure)

if __name__ == "__main__":
    raise SystemExit(runner.main_alone(FIGURE))
