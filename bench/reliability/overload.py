"""Figure 3, overload: bursts beyond ``proxy.max_in_flight``; how fast is the 503, do probes suffer?

    python -m bench.reliability.overload [--overload-rounds 5]

Bursts of 250 concurrent requests to a 1 s path with ``max_in_flight = 50``; the 503 latency three
ways (client-side for the burst, the agent's ``duration_ms``, single requests sent one at a time
while the slots are full); ``/health/live`` and ``/health/ready`` polled every 10 ms on new
connections, idle and during the bursts, plus the agent-side duration histogram.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections import Counter
from typing import Any, NamedTuple

from bench.proxy import progress
from bench.reliability import runner
from bench.reliability.harness import Ctx, finish_child, last_json, read_until, spawn_client, start_agent, stop_agent
from bench.reliability.noise import Noise
from bench.reliability.report import closing_lines, dist, fmt_counts, fmt_ms, table
from bench.reliability.sampling import Scrape, agent_log_lines, log_problems, scrape
from bench.reliability.upstream import SLOW_PREFIX

MAX_IN_FLIGHT = 50
CONCURRENCY = 250
UPSTREAM_DELAY_S = 1.0
PROBE_PATHS = ("/health/live", "/health/ready")


class BurstResult(NamedTuple):
    """One burst request of ``clients.burst``, which writes each as a JSON list in this order."""

    round: int
    status: int  # 0 when ``error`` is set
    error_code: str  # from the JSON body of a 4xx/5xx
    retry_after: int
    latency_ms: float
    t_send: float
    error: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overload-rounds", type=int, default=5, help="bursts of 250 concurrent requests (default 5)")


def within_5ms(before: Scrape, after: Scrape, route: str) -> dict[str, int]:
    """Requests on ``route`` between two scrapes: those within 5 ms (histogram bucket), and all."""

    def delta(name: str, **labels: str) -> float:
        return after.total(name, route=route, **labels) - before.total(name, route=route, **labels)

    within = delta("agent_http_request_duration_seconds_bucket", le="0.005")
    return {"within_5ms": int(within), "total": int(delta("agent_http_request_duration_seconds_count"))}


def measure(ctx: Ctx, args: argparse.Namespace) -> dict[str, Any]:
    noise = Noise()
    agent = start_agent(ctx, "overload", {"proxy": {"max_in_flight": MAX_IN_FLIGHT}})
    m0 = scrape(agent.admin_port)
    probe_params = {"mode": "probe", "port": agent.port, "paths": list(PROBE_PATHS), "interval_s": 0.01, "max_s": 120}
    poller = spawn_client(ctx, probe_params, "probe")
    read_until(poller, b"STARTED", 30.0)
    time.sleep(1.5)  # idle baseline for the probes
    progress(
        f"overload: {args.overload_rounds} bursts of {CONCURRENCY} concurrent requests to a 1 s endpoint, "
        f"max_in_flight {MAX_IN_FLIGHT} ..."
    )
    burst_params = {
        "mode": "overload",
        "port": agent.port,
        "concurrency": CONCURRENCY,
        "rounds": args.overload_rounds,
        "delay_s": UPSTREAM_DELAY_S,
        "pause_s": 0.5,
        "lone_per_round": 20,
    }
    client = spawn_client(ctx, burst_params, "overload")
    data = last_json(finish_child(ctx, client, 60 + args.overload_rounds * 10), "overload client")
    time.sleep(1.0)
    poller.send_signal(signal.SIGINT)
    probes = last_json(finish_child(ctx, poller, 30), "probe poller")
    time.sleep(1.5)  # let the access log's last batch reach the file
    m1 = scrape(agent.admin_port)
    lines = agent_log_lines(agent.log)
    stop_agent(ctx, agent)
    # Agent-side durations of the slow path's answers, from the access log.
    access = [x for x in lines if x.get("logger") == "agent.access" and str(x.get("path", "")).startswith(SLOW_PREFIX)]
    result = {
        **burst_figures(data, args.overload_rounds),
        "agent_503_ms": dist([float(x["duration_ms"]) for x in access if x.get("status") == 503]),
        "agent_200_ms": dist([float(x["duration_ms"]) for x in access if x.get("status") == 200]),
        "probes": probe_windows(probes["samples"], data["t_first_send"], data["t_last_end"]),
        "probe_histogram_agent_side": {route: within_5ms(m0, m1, route) for route in PROBE_PATHS},
        "agent_log_problems": dict(log_problems(lines).most_common(8)),
        "noise": noise.stop(),
    }
    result["_table"] = render(result)
    return result


def burst_figures(data: dict[str, Any], rounds: int) -> dict[str, Any]:
    """What the burst client saw: statuses, 503s per burst and their codes, latencies."""
    res = [BurstResult(*r) for r in data["results"]]
    ok = [r for r in res if not r.error]
    return {
        "max_in_flight": MAX_IN_FLIGHT,
        "concurrency": CONCURRENCY,
        "rounds": rounds,
        "upstream_delay_s": UPSTREAM_DELAY_S,
        "responses": {str(k): v for k, v in Counter(r.error or r.status for r in res).items()},
        "per_round_503": [sum(1 for r in res if r.round == i and r.status == 503) for i in range(rounds)],
        "error_codes_503": dict(Counter(r.error_code for r in res if r.status == 503)),
        "retry_after_on_503": sum(1 for r in res if r.status == 503 and r.retry_after),
        "client_503_ms": dist([r.latency_ms for r in ok if r.status == 503]),
        "lone_503_ms": dist([x[2] for x in data["lone"] if x[1] == 503]),
        "lone_not_503": dict(Counter(str(x[1]) for x in data["lone"] if x[1] != 503)),
        "client_200_ms": dist([r.latency_ms for r in ok if r.status == 200]),
    }


def probe_windows(samples: list[list[Any]], t_from: float, t_to: float) -> dict[str, dict[str, Any]]:
    """Probe latencies (200s) and other answers, before the bursts and during them.

    ``samples`` are ``[wall time, path, latency ms, status]`` from ``clients.prober``."""
    window: dict[str, dict[str, Any]] = {}
    for label, lo, hi in (("idle, before", 0.0, t_from), ("during overload", t_from, t_to)):
        for path in PROBE_PATHS:
            inside = [p for p in samples if p[1] == path and lo <= p[0] <= hi]
            window[f"{path} {label}"] = dist([p[2] for p in inside if p[3] == 200]) | {
                "non_200": Counter(str(p[3]) for p in inside if p[3] != 200)
            }
    return window


LATENCY_ROWS = (
    ("503 OVERLOADED", "client_503_ms", "client (send -> full response)"),
    ("503 OVERLOADED", "agent_503_ms", "agent access log duration_ms (all 503s)"),
    ("503 OVERLOADED", "lone_503_ms", "client, one extra request at a time while the slots are full"),
    ("200 (got a slot)", "client_200_ms", "client"),
    ("200 (got a slot)", "agent_200_ms", "agent access log"),
)


def dist_cells(d: dict[str, Any]) -> tuple[str, ...]:
    return str(d["n"]), fmt_ms(d["p50_ms"]), fmt_ms(d["p99_ms"]), fmt_ms(d["max_ms"])


def render(r: dict[str, Any]) -> str:
    latency = [(label, *dist_cells(r[key]), where) for label, key, where in LATENCY_ROWS]
    probes = [(k, *dist_cells(d), fmt_counts(d["non_200"]) or "0") for k, d in r["probes"].items()]
    h = r["probe_histogram_agent_side"]
    return "\n".join(
        [
            f"== 3. Overload: proxy.max_in_flight = {r['max_in_flight']}, {r['rounds']} bursts of {r['concurrency']} "
            f"concurrent GET {SLOW_PREFIX}{{n}}?delay_s=1 (upstream answers after {r['upstream_delay_s']:g} s), "
            "each on its own keep-alive connection",
            "",
            *table(("responses", "n", "p50 ms", "p99 ms", "max ms", "measured"), latency),
            f"all responses: {fmt_counts(r['responses'])}; 503s per burst: {r['per_round_503']} "
            f"(expected {r['concurrency'] - r['max_in_flight']}); "
            f"error_code of the 503s: {fmt_counts(r['error_codes_503'])}; with Retry-After: {r['retry_after_on_503']}; "
            f"one-at-a-time requests that were not 503: {fmt_counts(r['lone_not_503']) or '0'}",
            "",
            *table(("probe (main listener, new connection each)", "n 200", "p50 ms", "p99 ms", "max ms", "non-200"), probes),
            "agent-side (duration histogram, whole poll run): "
            + "; ".join(f"{route} {v['within_5ms']}/{v['total']} within 5 ms" for route, v in h.items()),
            *closing_lines(r),
        ]
    )


FIGURE = runner.Figure("overload", __doc__, add_arguments, measure)

if __name__ == "__main__":
    raise SystemExit(runner.main_alone(FIGURE))
