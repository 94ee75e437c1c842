"""The export queue against a real OTLP receiver: a healthy collector gets every span whatever
``tracing.max_queue``, and SIGTERM exports what is queued before the agent exits 0 (or gives up
within the shutdown timeout when the collector is gone)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.agent import AgentProcess
from tests.support.fixed_upstream import start_fixed_upstream
from tests.support.load import hammer
from tests.support.otlp import OtlpReceiver
from tests.support.polling import wait_until
from tests.tracing.traced import dumps, log_warnings, span_counters, traced_config

SLOW_S = 2.0
QUEUED = 300
SHUTDOWN_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def fixed_upstream() -> Iterator[str]:
    with start_fixed_upstream() as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


def test_a_healthy_collector_gets_every_span_even_with_a_small_queue(
    agent_factory: Callable[..., AgentProcess], fixed_upstream: str, receiver: OtlpReceiver
) -> None:
    """The worker must not wait for a batch bigger than the queue can hold: with 64 places and a
    batch of 512, a span would only leave on the one-second timer, 64 a second at most."""
    agent = agent_factory(traced_config(fixed_upstream, receiver.endpoint, {"sample_ratio": 1.0, "max_queue": 64}))
    requests = 3000
    assert hammer(agent.port, "/echo/small-queue", total=requests, connections=1).statuses == {200: requests}
    receiver.wait_for_spans(lambda s: s.attributes["url.path"] == "/echo/small-queue", count=requests, timeout=15)
    counters = span_counters(agent)
    assert counters["queue_full"] == counters["export_failed"] == 0, counters


def test_sigterm_exports_what_is_queued_then_exits_0(
    agent_factory: Callable[..., AgentProcess], fixed_upstream: str, receiver: OtlpReceiver
) -> None:
    receiver.set_mode("slow", SLOW_S)  # the first export holds the worker: the rest wait in the queue
    agent = agent_factory(
        traced_config(
            fixed_upstream,
            receiver.endpoint,
            {"sample_ratio": 1.0},
            server={"drain_delay_s": 0.1, "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S},
        )
    )
    assert hammer(agent.port, "/echo/first", total=1, connections=1).statuses == {200: 1}
    assert wait_until(lambda: receiver.state.handling == 1, timeout=5)
    assert hammer(agent.port, "/echo/queued", total=QUEUED).statuses == {200: QUEUED}
    assert span_counters(agent)["queue"] == QUEUED

    agent.send_signal()
    started = time.monotonic()
    assert agent.wait(SHUTDOWN_TIMEOUT_S + 10) == 0
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S
    paths = [span.attributes["url.path"] for span in receiver.spans()]
    assert paths.count("/echo/queued") == QUEUED and paths.count("/echo/first") == 1
    warnings = [record for record in log_warnings(agent) if record["message"] != "draining started"]
    assert warnings == [], dumps(warnings)
    assert agent.log_records()[-1]["message"] == "agent stopped"


def test_sigterm_with_the_collector_down_gives_up_within_the_shutdown_timeout(
    agent_factory: Callable[..., AgentProcess], fixed_upstream: str, receiver: OtlpReceiver
) -> None:
    receiver.down()
    shutdown_timeout_s = 2.0
    agent = agent_factory(
        traced_config(
            fixed_upstream,
            receiver.endpoint,
            {"sample_ratio": 1.0},
            server={"drain_delay_s": 0.1, "shutdown_timeout_s": shutdown_timeout_s},
        )
    )
    assert hammer(agent.port, "/echo/lost", total=QUEUED).statuses == {200: QUEUED}
    agent.send_signal()
    started = time.monotonic()
    assert agent.wait(30) == 0
    # Neither the exporter's 10 s timeout nor its retries hold the exit up: not after "agent stopped" either.
    assert time.monotonic() - started < shutdown_timeout_s + 3
    messages = [record["message"] for record in agent.log_records()]
    assert "spans still queued at shutdown were not exported" in messages
    assert "agent stopped" in messages
