"""The latency benchmark's arithmetic: percentiles, added-over-direct, the rate plan, h2load's output."""

from __future__ import annotations

import pytest

from bench import latency


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(x) for x in range(1, 1001)]  # 1..1000
    assert latency.percentile(values, 50) == 500
    assert latency.percentile(values, 99) == 990
    assert latency.percentile(values, 99.9) == 999
    assert latency.percentile(values, 100) == 1000
    assert latency.percentile([7.0], 99.9) == 7.0
    with pytest.raises(ValueError):
        latency.percentile([], 50)


def test_latency_percentiles_sort_and_convert_us_to_ms() -> None:
    got = latency.latency_percentiles([3000, 1000, 2000, *([100] * 997)])
    assert got == {"p50": 0.1, "p99": 0.1, "p99.9": 2.0}


def test_added_over_direct_and_the_target_line() -> None:
    rows = [
        {"key": "direct", "offered_rps": 1000, "p50_ms": 0.05, "p99_ms": 0.1, "p99.9_ms": 0.2},
        {"key": "agent", "offered_rps": 1000, "p50_ms": 0.2, "p99_ms": 0.8, "p99.9_ms": 1.0},
        {"key": "haproxy", "offered_rps": 1000, "p50_ms": 0.1, "p99_ms": 0.3, "p99.9_ms": 0.5},
        {"key": "direct", "offered_rps": 5000, "p50_ms": 0.04, "p99_ms": 0.1, "p99.9_ms": 0.2},
        {"key": "agent", "offered_rps": 5000, "p50_ms": 0.5, "p99_ms": 2.0, "p99.9_ms": 3.0},
    ]
    latency.add_added(rows)
    assert rows[0]["added_p50_ms"] is None
    assert (rows[1]["added_p50_ms"], rows[1]["added_p99_ms"], rows[1]["added_p99.9_ms"]) == (0.15, 0.7, 0.8)
    assert rows[4]["added_p50_ms"] == 0.46  # against the direct row at the same rate
    target = latency.target_check(rows)
    assert target["agent_added_ms"] == {"p50": 0.15, "p99": 0.7} and not target["met"]  # p99 over 0.6 ms
    assert target["haproxy_added_ms"] == {"p50": 0.05, "p99": 0.2}
    assert "NOT met" in latency.target_line(target)


def test_the_rate_is_split_over_connections_of_about_250_per_second() -> None:
    assert latency.plan_clients(1000) == (4, 250.0)
    assert latency.plan_clients(5000) == (20, 250.0)
    assert latency.plan_clients(100) == (1, 100.0)
    clients, each = latency.plan_clients(1100)
    assert clients * each == 1100


def test_h2load_log_and_summary() -> None:
    log = "1796480008053024\t200\t148\n1796480008053240\t200\t45\n1796480008063473\t-1\t5000\n1\t503\t90\n"
    assert latency.parse_log(log) == ([148, 45], 2)
    summary = (
        "finished in 3.00s, 250.00 req/s\n"
        "requests: 500 total, 501 started, 498 done, 497 succeeded, 2 failed, 1 errored, 0 timeout\n"
    )
    assert latency.parse_summary(summary) == 3
    with pytest.raises(ValueError):
        latency.parse_summary("no summary")
