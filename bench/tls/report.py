"""The TLS rows of ``bench.proxy``'s output: keep-alive and new-connection tables, the 2.5x target."""

from __future__ import annotations

import statistics
from typing import Any

from bench.table import grid, num

KEEPALIVE_HEADER = (
    "row",
    "requests/s per run",
    "median r/s",
    "p50 ms",
    "p99 ms",
    "proxy µs/req",
    "÷HAProxy",
    "proxy CPU%",
    "upstr µs/req",
    "proxy-CPU other%",
    "load-CPU busy%",
    "errors",
)
HANDSHAKE_HEADER = (
    "row",
    "connections/s per run",
    "median conn/s",
    "p50 ms",
    "p99 ms",
    "proxy µs/conn",
    "÷HAProxy",
    "proxy CPU%",
    "client µs/conn",
    "proxy-CPU other%",
    "load-CPU busy%",
    "errors",
)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _body(rows: list[dict[str, Any]], third_last: str) -> list[tuple[str, ...]]:
    hap = next((r["proxy_cpu_us_per_req"] for r in rows if r["key"].startswith("haproxy")), None)
    return [
        (
            r["name"],
            " / ".join(f"{x:.0f}" for x in r["rps_runs"]),
            f"{r['rps_median']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            num(r["proxy_cpu_us_per_req"], ".1f"),
            num(_ratio(r["proxy_cpu_us_per_req"], hap), ".2f"),
            num(r["proxy_cpu_pct"], ".0f"),
            num(r.get(third_last), ".1f"),
            f"{r['cpu0_other_pct_max']:.1f}",
            f"{r['load_cpu_busy_pct']:.0f}",
            str(r["errors"]),
        )
        for r in rows
    ]


def tls_lines(
    meta: dict[str, Any], rows: list[dict[str, Any]], tls: dict[str, Any], plain_ratio: float | None, path: str
) -> list[str]:
    """The two tables and the summary lines; ``plain_ratio``: plain HTTP's agent ÷ HAProxy in the same run."""
    negotiated = sorted(set(tls["negotiated"].values()))
    lines = [
        f"TLS: {tls['certificate']}; negotiated {' | '.join(negotiated)}; the upstream stays plain HTTP",
        f"keep-alive: {meta['loadgen']} -t1 -c{meta['connections']} -d{meta['seconds']}s over https, GET {path}",
        "",
    ]
    lines += grid(KEEPALIVE_HEADER, _body([r for r in rows if r["kind"] == "tls"], "upstream_cpu_us_per_req"))
    lines += [
        "",
        f"new connections: python -m bench.tls.handshakes, {meta['connections']} workers, each: connect, full TLS handshake "
        "(never resumed), one GET with Connection: close, read to the close; proxy µs/conn = the proxy's CPU ÷ connections",
        "",
    ]
    lines += grid(HANDSHAKE_HEADER, _body([r for r in rows if r["kind"] == "handshake"], "client_cpu_us_per_req"))
    lines += ["", _keepalive_target(tls["keepalive"], plain_ratio), _handshake_line(tls["handshake"])]
    lines.append(
        f"agent (TLS) access log: {tls['agent_access_lines']} lines for {tls['agent_proxied_requests']} requests; "
        f"agent_tls_handshake_errors_total = {num(tls['agent_handshake_errors'], '.0f')}; "
        f"RSS after all load {tls['agent_rss_after_mib']:.1f} MiB; log warnings/errors: {tls['agent_log_warnings']}"
    )
    lines.extend(f"  agent (TLS) log: {text}" for text in tls["agent_log_warnings_first"])
    return lines


def _rounds(values: list[float]) -> str:
    if not values:
        return ""
    return f" (per-round ratios: {', '.join(f'{x:.2f}' for x in values)}; their median {statistics.median(values):.2f})"


def _keepalive_target(t: dict[str, Any], plain_ratio: float | None) -> str:
    limit = t["agent_vs_haproxy_cpu_ratio_max"]
    head = f"target (TLS keep-alive): agent µs/req ≤ {limit:g} × HAProxy's: "
    ratio = t["agent_vs_haproxy_cpu_ratio"]
    if ratio is None:
        return head + "n/a (HAProxy not installed)"
    plain = f"; plain HTTP in this run: {plain_ratio:.2f}×" if plain_ratio is not None else ""
    return (
        head
        + f"{ratio:.2f}× (agent {t['agent_us']:.1f} µs, HAProxy {t['haproxy_us']:.1f} µs per request) — "
        + ("met" if ratio <= limit else "NOT met")
        + _rounds(t["agent_vs_haproxy_cpu_ratio_rounds"])
        + plain
    )


def _handshake_line(t: dict[str, Any]) -> str:
    head = "new connections (no target): "
    ratio = t["agent_vs_haproxy_cpu_ratio"]
    if ratio is None:
        return head + f"agent {num(t['agent_us'], '.1f')} µs per connection; HAProxy n/a"
    return (
        head
        + f"{ratio:.2f}× (agent {t['agent_us']:.1f} µs, HAProxy {t['haproxy_us']:.1f} µs per connection: "
        + "full handshake + one proxied request + close)"
        + _rounds(t["agent_vs_haproxy_cpu_ratio_rounds"])
    )
