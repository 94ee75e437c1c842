"""Exemplars: a sampled request's ``{trace_id, span_id}`` on its bucket of the request-duration
histogram, in the OpenMetrics exposition only (the classic text format has no place for them and
stays as promtool wants it). A real Prometheus with exemplar storage scrapes the real agent and
answers ``/api/v1/query_exemplars`` with the trace id of a request the test made."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

from agent.metrics.http import DURATION_BUCKETS_S
from tests.support.agent import AgentProcess
from tests.support.otlp import OtlpReceiver
from tests.support.prometheus import PrometheusServer, prometheus_binary
from tests.support.upstream import UpstreamProcess
from tests.tracing.traced import parent_id, seen_by_app, send, split_traceparent, trace_id, traced_config, traceparent

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
BUCKET = "agent_http_request_duration_seconds_bucket"
PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture(scope="module")
def agent(upstream: UpstreamProcess, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """Only requests that arrive sampled are traced (ratio 0, incoming flags trusted)."""
    upstream.set_mode("healthy")
    process = AgentProcess(
        tmp_path_factory.mktemp("exemplars"), traced_config(upstream.url, receiver.endpoint, {"sample_ratio": 0.0})
    )
    yield process.start()
    process.stop()


def sampled_request(agent: AgentProcess, path: str, flags: str = "01") -> tuple[str, str]:
    """(trace id, the agent's span id) of one request to ``path``."""
    trace = trace_id()
    response = send(agent, "GET", path, headers={"traceparent": traceparent(trace, parent_id(), flags)})
    assert response.status == 200
    [sent] = seen_by_app(response, "traceparent")
    return trace, split_traceparent(sent)[2]


def scrape(agent: AgentProcess, accept: str | None) -> str:
    response = agent.get("/metrics", admin=True, headers={"Accept": accept} if accept else {})
    assert response.status == 200
    expected = "application/openmetrics-text" if accept else "text/plain"
    assert response.headers["Content-Type"].startswith(expected)
    return response.body.decode()


def route_exemplars(text: str, route: str) -> list[tuple[str, dict[str, str], float]]:
    """(le, exemplar labels, exemplar value) of every bucket of ``route`` that has one."""
    found = []
    for family in openmetrics_families(text):
        for sample in family.samples:
            if sample.name == BUCKET and sample.labels.get("route") == route and sample.exemplar is not None:
                found.append((sample.labels["le"], sample.exemplar.labels, sample.exemplar.value))
    return found


def test_openmetrics_buckets_carry_the_trace_and_span_of_a_sampled_request(agent: AgentProcess, receiver: OtlpReceiver) -> None:
    trace, span_id = sampled_request(agent, "/echo/exemplar/1")
    unsampled, _ = sampled_request(agent, "/echo/unsampled/1", flags="00")

    text = scrape(agent, OPENMETRICS)
    [(le, labels, value)] = route_exemplars(text, "/echo/exemplar/{id}")
    assert labels == {"trace_id": trace, "span_id": span_id}
    bounds = [*DURATION_BUCKETS_S, float("inf")]
    index = bounds.index(float(le))
    assert (bounds[index - 1] if index else 0.0) < value <= bounds[index]  # the bucket its duration fell in
    assert route_exemplars(text, "/echo/unsampled/{id}") == []
    assert unsampled not in text
    # The exemplar names a span the collector got.
    receiver.wait_for_spans(lambda s: (s.trace_id, s.span_id) == (trace, span_id))


def test_the_text_format_has_no_exemplars_and_promtool_accepts_it(agent: AgentProcess) -> None:
    trace, _ = sampled_request(agent, "/echo/text-format/1")
    text = scrape(agent, None)
    assert 'route="/echo/text-format/{id}"' in text
    assert trace not in text
    assert [line for line in text.splitlines() if " # " in line or "trace_id" in line] == []
    if PROMTOOL is None:
        pytest.skip("promtool missing (Debian package prometheus)")
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    lint = (result.stdout + result.stderr).decode().strip()
    assert result.returncode == 0 and lint == "", lint


@pytest.mark.slow
@pytest.mark.skipif(prometheus_binary() is None, reason="prometheus missing (Debian package prometheus)")
def test_prometheus_stores_the_exemplar_and_returns_the_trace_id(agent: AgentProcess, tmp_path) -> None:
    trace, span_id = sampled_request(agent, "/echo/prometheus/1")
    prometheus = PrometheusServer(
        tmp_path / "prometheus", [f"127.0.0.1:{agent.admin_port}"], extra_flags=["--enable-feature=exemplar-storage"]
    ).start()
    try:
        query = f'{BUCKET}{{route="/echo/prometheus/{{id}}"}}'
        deadline = time.monotonic() + 20
        stored: list[dict[str, str]] = []
        while not stored and time.monotonic() < deadline:
            now = time.time()
            series = prometheus.api("query_exemplars", query=query, start=str(now - 300), end=str(now + 60))
            stored = [exemplar["labels"] for found in series for exemplar in found["exemplars"]]
            time.sleep(0.5)
        assert stored == [{"trace_id": trace, "span_id": span_id}], prometheus.log()[-1500:]
    finally:
        prometheus.stop()
