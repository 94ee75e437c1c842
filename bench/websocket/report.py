"""The WebSocket rows of ``bench.proxy``'s output: their table, the 2x target and the agent's log."""

from __future__ import annotations

import statistics
from typing import Any

from bench.table import grid, num

HEADER = (
    "row",
    "msgs/s per run",
    "median msg/s",
    "p50 ms",
    "p99 ms",
    "proxy µs/msg",
    "÷HAProxy",
    "proxy CPU%",
    "echo µs/msg",
    "client µs/msg",
    "proxy-CPU other%",
    "load-CPU busy%",
    "errors",
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def websocket_lines(meta: dict[str, Any], rows: list[dict[str, Any]], ws: dict[str, Any]) -> list[str]:
    lines = [
        f"WebSocket echo: {meta['connections']} connections, each a closed loop of echo round trips, "
        f"{meta['seconds']} s per run; upstream {ws['echo_server']}; client python -m bench.websocket.client",
        f"definition: {ws['definition'].replace('->', '→').replace(' x ', ' × ').replace(' us/', ' µs/')}",
        "",
    ]
    body = []
    for r in rows:
        us = r["proxy_cpu_us_per_msg"]
        target = ws["targets"].get(_size_key(r["message_bytes"]), {})
        body.append(
            (
                r["name"],
                " / ".join(f"{x:.0f}" for x in r["msgs_per_s_runs"]),
                f"{r['msgs_per_s_median']:.0f}",
                f"{r['round_trip_p50_ms']:.2f}",
                f"{r['round_trip_p99_ms']:.2f}",
                num(us, ".2f"),
                num(_ratio(us, target.get("haproxy_us_per_msg")), ".2f"),
                num(r["proxy_cpu_pct"], ".0f"),
                f"{r['upstream_cpu_us_per_msg']:.2f}",
                num(r["client_cpu_us_per_msg"], ".2f"),
                f"{r['cpu0_other_pct_max']:.1f}",
                f"{r['load_cpu_busy_pct']:.0f}",
                str(r["errors"]),
            )
        )
    lines += grid(HEADER, body)
    lines.append("")
    for target in ws["targets"].values():
        lines.append(_target_line(target))
    lines.append(
        f"agent (WebSocket) access log: {ws['agent_tunnel_access_lines']} tunnel lines for {ws['agent_tunnels']} tunnels; "
        f"RSS after all load {ws['agent_rss_after_mib']:.1f} MiB; log warnings/errors: {ws['agent_log_warnings']}"
    )
    lines.extend(f"  agent (WebSocket) log: {text}" for text in ws["agent_log_warnings_first"])
    return lines


def _size_key(size: int) -> str:
    return str(size) if size < 1024 else f"{size // 1024}k"


def _target_line(t: dict[str, Any]) -> str:
    size = t["message_bytes"]
    label = f"{size} B" if size < 1024 else f"{size // 1024} KiB"
    ratio = t["agent_vs_haproxy_cpu_ratio"]
    head = f"target ({label}): agent µs/msg ≤ {t['agent_vs_haproxy_cpu_ratio_max']:g} × HAProxy's: "
    if ratio is None:
        return head + "n/a (HAProxy not installed)"
    rounds = t["agent_vs_haproxy_cpu_ratio_rounds"]
    return (
        head
        + f"{ratio:.2f}× (agent {t['agent_us_per_msg']:.2f} µs, HAProxy {t['haproxy_us_per_msg']:.2f} µs per message) — "
        + ("met" if ratio <= t["agent_vs_haproxy_cpu_ratio_max"] else "NOT met")
        + (
            f" (per-round ratios: {', '.join(f'{x:.2f}' for x in rounds)}; their median {statistics.median(rounds):.2f})"
            if rounds
            else ""
        )
    )
