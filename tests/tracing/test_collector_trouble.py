"""A collector that is down, slow or answering 500 costs the requests nothing: 100,000 proxied
requests through a real agent, every one sampled, against a real OTLP receiver made to misbehave.

Every request is a quick 200; the spans that cannot go are dropped and counted
(``agent_tracing_spans_dropped_total{reason="queue_full"|"export_failed"}``), the agent's memory
stays bounded by ``tracing.max_queue``, and the log says so at most once a minute.

The memory bound, measured on this test's own setup (max_queue 64, 100,000 requests after a
warm-up): the agent's RSS grew by 1.4 MiB with the collector down, 0.03 MiB with tracing off;
with an unbounded queue each waiting span holds about 3.4 KiB (115 MiB for 34,000 spans), so the
100,000 spans here would take ~340 MiB. ``RSS_GROWTH_MAX_BYTES`` (16 MiB) sits well above the
noise and far below that: it also catches a leak of 170 bytes per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.agent import AgentProcess
from tests.support.fixed_upstream import start_fixed_upstream
from tests.support.load import hammer
from tests.support.memory import RssSampler
from tests.support.otlp import OtlpReceiver
from tests.support.polling import wait_until
from tests.tracing.traced import dumps, log_warnings, span_counters, spans_made, traced_config

pytestmark = pytest.mark.slow

REQUESTS = 100_000
WARMUP = 5_000
MAX_QUEUE = 64
RSS_GROWTH_MAX_BYTES = 16 * 1024 * 1024
P99_MAX_S = 0.25
LATENCY_MAX_S = 2.0  # far below the exporter's 10 s timeout and the slow collector's delay
SLOW_S = 3.0
WARN_EVERY_S = 60.0


@pytest.fixture(scope="module")
def fixed_upstream() -> Iterator[str]:
    with start_fixed_upstream() as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.mark.parametrize("trouble", ["down", "slow", "error"])
def test_a_collector_in_trouble_costs_the_requests_nothing(
    agent_factory: Callable[..., AgentProcess], fixed_upstream: str, receiver: OtlpReceiver, trouble: str
) -> None:
    if trouble == "down":
        receiver.down()
    elif trouble == "slow":
        receiver.set_mode("slow", SLOW_S)
    else:
        receiver.set_mode("error")
    agent = agent_factory(traced_config(fixed_upstream, receiver.endpoint, {"sample_ratio": 1.0, "max_queue": MAX_QUEUE}))
    started = time.monotonic()
    assert hammer(agent.port, "/echo/warm-up", total=WARMUP).statuses == {200: WARMUP}

    with RssSampler(agent.process.pid) as rss:  # type: ignore[union-attr]
        result = hammer(agent.port, "/api/v1/orders/1", total=REQUESTS)
    elapsed_s = time.monotonic() - started

    assert result.statuses == {200: REQUESTS}, result.summary()
    assert result.errors == []
    assert result.percentile(0.99) < P99_MAX_S, result.summary()
    assert max(result.latencies_s) < LATENCY_MAX_S, result.summary()
    assert rss.growth < RSS_GROWTH_MAX_BYTES, f"RSS grew {rss.growth / 2**20:.1f} MiB: {result.summary()}"

    if trouble == "slow":  # the first export returns after SLOW_S, which a fast machine's load may not last
        assert wait_until(lambda: span_counters(agent)["exported"] > 0, timeout=SLOW_S + 15), span_counters(agent)
    else:  # the first batch counts as failed once the exporter's retries give up (10 s)
        assert wait_until(lambda: span_counters(agent)["export_failed"] > 0, timeout=15), span_counters(agent)
    counters = span_counters(agent)
    made = spans_made(agent)
    # Every span is exported, dropped, failed or queued, but for a batch being exported right now.
    assert WARMUP + REQUESTS - MAX_QUEUE <= made <= WARMUP + REQUESTS, counters
    assert counters["queue"] <= MAX_QUEUE
    if trouble == "slow":  # exports succeed, too slowly: the queue overflows
        assert counters["exported"] > 0 and counters["queue_full"] > 0 and counters["export_failed"] == 0, counters
    else:
        assert counters["exported"] == 0 and counters["export_failed"] > 0, counters

    # One warning a minute about lost spans, whatever the reason; nothing from the exporter library.
    warnings = log_warnings(agent)
    assert all(record["logger"] == "agent.tracing" for record in warnings), dumps(warnings[:5])
    assert 1 <= len(warnings) <= 1 + int(elapsed_s // WARN_EVERY_S), dumps(warnings)


def test_export_resumes_when_the_collector_is_back(
    agent_factory: Callable[..., AgentProcess], fixed_upstream: str, receiver: OtlpReceiver
) -> None:
    receiver.down()
    agent = agent_factory(traced_config(fixed_upstream, receiver.endpoint, {"sample_ratio": 1.0, "max_queue": MAX_QUEUE}))
    assert hammer(agent.port, "/echo/while-down", total=1000).statuses == {200: 1000}
    assert wait_until(lambda: span_counters(agent)["export_failed"] > 0, timeout=15), span_counters(agent)
    receiver.up()
    assert hammer(agent.port, "/echo/back", total=100, connections=1).statuses == {200: 100}
    # The exporter's retries back off up to ~4 s; its timeout is 10 s.
    assert wait_until(lambda: span_counters(agent)["exported"] > 0, timeout=20), span_counters(agent)
    assert receiver.wait_for_spans(lambda s: s.attributes["url.path"] == "/echo/back", timeout=5)
