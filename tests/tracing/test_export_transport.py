"""How spans travel to the collector, against the real OTLP receiver: what the SDK's OTLP/HTTP
exporter does and the agent's own sender (``agent/otlp.py``) must do too. A 429 is retried after
its ``Retry-After``; ``OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=gzip`` compresses the body; a
collector behind TLS is trusted through ``OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`` and refused
(counted, not retried) when its certificate does not verify."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.agent import AgentProcess
from tests.support.fixed_upstream import start_fixed_upstream
from tests.support.load import hammer
from tests.support.otlp import OtlpReceiver
from tests.support.polling import wait_until
from tests.tracing.traced import span_counters, traced_config

RETRY_AFTER_S = 1.0


@pytest.fixture(scope="module")
def fixed_upstream() -> Iterator[str]:
    with start_fixed_upstream() as url:
        yield url


def test_a_429_is_retried_after_its_retry_after(agent_factory: Callable[..., AgentProcess], fixed_upstream: str) -> None:
    with OtlpReceiver() as receiver:
        receiver.set_mode("throttle", RETRY_AFTER_S)
        agent = agent_factory(traced_config(fixed_upstream, receiver.endpoint, {"sample_ratio": 1.0}))
        assert hammer(agent.port, "/echo/throttled", total=1, connections=1).statuses == {200: 1}
        receiver.wait_for_spans(lambda s: s.attributes["url.path"] == "/echo/throttled", timeout=10)
        first, second = receiver.exports()[:2]
        assert (first.answered, second.answered) == (429, 200)
        assert second.at - first.at >= RETRY_AFTER_S * 0.9
        counters = span_counters(agent)
        assert counters["export_failed"] == 0 and counters["exported"] >= 1, counters


def test_gzip_from_the_environment(agent_factory: Callable[..., AgentProcess], fixed_upstream: str) -> None:
    with OtlpReceiver() as receiver:
        agent = agent_factory(
            traced_config(fixed_upstream, receiver.endpoint, {"sample_ratio": 1.0}),
            env={"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "gzip"},
        )
        assert hammer(agent.port, "/echo/compressed", total=3, connections=1).statuses == {200: 3}
        receiver.wait_for_spans(lambda s: s.attributes["url.path"] == "/echo/compressed", count=3, timeout=10)
        assert {export.headers.get("content-encoding") for export in receiver.exports()} == {"gzip"}


@pytest.fixture(scope="module")
def collector_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1 and the file of the CA that issued it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("collector-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file


def test_a_collector_over_tls_trusted_through_the_environment(
    agent_factory: Callable[..., AgentProcess], fixed_upstream: str, collector_tls: tuple[ssl.SSLContext, Path]
) -> None:
    context, ca_file = collector_tls
    with OtlpReceiver(tls=context) as receiver:
        assert receiver.endpoint.startswith("https://")
        agent = agent_factory(
            traced_config(fixed_upstream, receiver.endpoint, {"sample_ratio": 1.0}),
            env={"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(ca_file)},
        )
        assert hammer(agent.port, "/echo/over-tls", total=2, connections=1).statuses == {200: 2}
        receiver.wait_for_spans(lambda s: s.attributes["url.path"] == "/echo/over-tls", count=2, timeout=10)


def test_a_collector_whose_certificate_does_not_verify_gets_nothing(
    agent_factory: Callable[..., AgentProcess], fixed_upstream: str, collector_tls: tuple[ssl.SSLContext, Path]
) -> None:
    """Not retried until the deadline: a certificate that fails now fails in a second too."""
    context, _ = collector_tls
    with OtlpReceiver(tls=context) as receiver:
        # The system trust store (and the one this sandbox names in REQUESTS_CA_BUNDLE) lacks the test CA.
        agent = agent_factory(traced_config(fixed_upstream, receiver.endpoint, {"sample_ratio": 1.0}))
        assert hammer(agent.port, "/echo/untrusted", total=2, connections=1).statuses == {200: 2}
        assert wait_until(lambda: span_counters(agent)["export_failed"] >= 2, timeout=5), span_counters(agent)
        assert receiver.spans() == []
