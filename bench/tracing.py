"""The tracing rows of ``bench.proxy`` (``--only tracing``): their configs, the OTLP sink, the table.

Four agents with the same config but ``[tracing]``: off, and on at ``sample_ratio`` 0, 0.01 and
1.0 (wrk sends no ``traceparent``, so the ratio decides every request), each exporting to a
throwaway OTLP/HTTP sink: a private nginx on the load CPU that answers ``POST /v1/traces`` with an
empty 200 (a valid, empty ``ExportTraceServiceResponse``) and discards the body. So the agent
pays the whole export (span objects, protobuf encoding, the HTTP POST) and the sink costs the
proxy CPU nothing. HAProxy is the yardstick, as in the HTTP rows.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.table import grid, num

RATIOS = (0.0, 0.01, 1.0)
TARGET_RATIO = 0.01
TARGET_PCT = 3.0  # the target: at 0.01, CPU per request within 3 % of tracing off
SINK_PATH = "/v1/traces"

HEADER = (
    "row",
    "requests/s per run",
    "median r/s",
    "p50 ms",
    "p99 ms",
    "proxy µs/req",
    "vs off",
    "÷HAProxy",
    "proxy CPU%",
    "spans exported",
    "spans dropped",
    "errors",
)


def row_key(ratio: float | None) -> str:
    return "agent_trace_off" if ratio is None else f"agent_trace_{ratio:g}"


def row_name(ratio: float | None) -> str:
    return "agent, tracing off" if ratio is None else f"agent, tracing {ratio:g}"


def tracing_section(sink_port: int, ratio: float | None) -> dict[str, Any]:
    if ratio is None:
        return {"enabled": False}
    return {"enabled": True, "endpoint": f"http://127.0.0.1:{sink_port}{SINK_PATH}", "sample_ratio": ratio}


def sink_nginx_conf(common: str, temp_paths: str, port: int) -> str:
    """``common`` and ``temp_paths``: bench.proxy's nginx boilerplate for this directory."""
    return (
        common
        + f"""http {{
{temp_paths}
  access_log off;
  client_max_body_size 64m;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      default_type application/x-protobuf;
      return 200 "";
    }}
  }}
}}
"""
    )


def round_changes_pct(row_runs: list[float | None], off_runs: list[float | None]) -> list[float]:
    """Per round, how much more CPU per request than tracing off in the same round, in %."""
    return [round((a / b - 1) * 100, 1) for a, b in zip(row_runs, off_runs, strict=True) if a and b]


def targets(by_key: dict[str, dict[str, Any]]) -> dict[str, Any]:
    off = by_key[row_key(None)]["proxy_cpu_us_per_req_runs"]
    changes = {f"{ratio:g}": round_changes_pct(by_key[row_key(ratio)]["proxy_cpu_us_per_req_runs"], off) for ratio in RATIOS}
    at_target = changes[f"{TARGET_RATIO:g}"]
    median = statistics.median(at_target) if at_target else None
    return {
        "cpu_change_pct_rounds": changes,
        "cpu_change_pct_median": {k: (statistics.median(v) if v else None) for k, v in changes.items()},
        "target_ratio": TARGET_RATIO,
        "target_max_pct": TARGET_PCT,
        "target_met": None if median is None else median <= TARGET_PCT,
    }


def tracing_lines(meta: dict[str, Any], rows: list[dict[str, Any]], tracing: dict[str, Any]) -> list[str]:
    by_key = {r["key"]: r for r in rows}
    off_us = by_key[row_key(None)]["proxy_cpu_us_per_req"]
    hap_us = by_key.get("haproxy", {}).get("proxy_cpu_us_per_req")
    lines = [
        f"Tracing: {meta['loadgen']} -t1 -c{meta['connections']} -d{meta['seconds']}s; GET {meta['path']} -> nginx static JSON; "
        f"no traceparent from the client, so sample_ratio decides; OTLP/HTTP sink: {tracing['sink']}",
        "",
    ]
    body = []
    for r in rows:
        us = r["proxy_cpu_us_per_req"]
        spans = tracing["spans"].get(r["key"], {})
        body.append(
            (
                r["name"],
                " / ".join(f"{x:.0f}" for x in r["rps_runs"]),
                f"{r['rps_median']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                num(us, ".1f"),
                "-" if r["key"] == "haproxy" or us is None or not off_us else f"{(us / off_us - 1) * 100:+.1f}%",
                num(us / hap_us if us is not None and hap_us else None, ".2f"),
                num(r["proxy_cpu_pct"], ".0f"),
                num(spans.get("exported"), ".0f"),
                num(spans.get("dropped"), ".0f"),
                str(r["errors"]),
            )
        )
    lines += grid(HEADER, body)
    t = tracing["targets"]
    rounds = t["cpu_change_pct_rounds"]
    lines.append("")
    lines.append(
        "per-round CPU change vs tracing off (same round): "
        + "; ".join(f"{ratio}: {', '.join(f'{x:+.1f}%' for x in v)}" for ratio, v in rounds.items())
    )
    split = []
    for r in rows:
        main, total = r.get("main_thread_cpu_us_per_req"), r["proxy_cpu_us_per_req"]
        if main is not None and total is not None:
            split.append(f"{r['name']}: {main:.1f} + {total - main:.1f}")
    if split:
        lines.append("µs/req on the event-loop thread + other threads (export, libuv workers), medians: " + "; ".join(split))
    median = t["cpu_change_pct_median"][f"{TARGET_RATIO:g}"]
    verdict = "n/a" if median is None else ("met" if t["target_met"] else "NOT met")
    lines.append(
        f"target: tracing at {TARGET_RATIO:g} within {TARGET_PCT:g}% of tracing off: median {num(median, '+.1f')}% — {verdict}; "
        f"at 1.0: {num(t['cpu_change_pct_median']['1'], '+.1f')}% CPU per request"
    )
    return lines
