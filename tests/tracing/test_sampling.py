"""Which requests become spans, and the sampled flag the app is told: real agents, the real test
app, a real OTLP receiver.

Parent-based when ``trust_incoming_sampling`` (the default): an incoming sampled flag of 01 is
exported, 00 is not, and only requests without a valid ``traceparent`` go by ``sample_ratio``.
Without trust the ratio decides every request, on the trace id's lower 64 bits as the SDK's
``TraceIdRatioBased`` does, so a given trace id is sampled or not whatever its flag said. Either
way the app receives the decision in the flag the agent sends, with the agent's span id as parent
and the trace id kept. A request that was not sampled is shown absent by a sampled marker request
sent after it: spans are exported in order, so once the marker's arrived, the first would have too.
Probes are not traced unless ``tracing.trace_local``.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

from agent.tracing import is_sampled, ratio_threshold
from tests.support.agent import AgentProcess
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.upstream import UpstreamProcess
from tests.tracing.traced import parent_id, seen_by_app, send, split_traceparent, trace_id, traced_config, traceparent

AGENTS = {
    "trust-ratio-0": {"sample_ratio": 0.0, "trust_incoming_sampling": True},
    "trust-ratio-1": {"sample_ratio": 1.0, "trust_incoming_sampling": True},
    "no-trust-ratio-0.5": {"sample_ratio": 0.5, "trust_incoming_sampling": False},
    "trace-local": {"sample_ratio": 1.0, "trace_local": True},
}


def low_trace_id() -> str:
    """A trace id a ratio of 0.5 samples: its lower 64 bits are below 2**63."""
    return secrets.token_hex(8) + random.choice("01234567") + secrets.token_hex(8)[1:]


def high_trace_id() -> str:
    return secrets.token_hex(8) + random.choice("89abcdef") + secrets.token_hex(8)[1:]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture(scope="module")
def agents(
    upstream: UpstreamProcess, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], AgentProcess]]:
    """``agents(name)``: the agent with ``AGENTS[name]``, started on first use, shared by the module."""
    upstream.set_mode("healthy")
    started: dict[str, AgentProcess] = {}

    def get(name: str) -> AgentProcess:
        if name not in started:
            config = traced_config(upstream.url, receiver.endpoint, AGENTS[name])
            started[name] = AgentProcess(tmp_path_factory.mktemp(name), config).start()
        return started[name]

    yield get
    for agent in started.values():
        agent.stop()


def marker(agent: AgentProcess, receiver: OtlpReceiver) -> None:
    """Send a request every agent here samples (a trusted 01, or a trace id any ratio of 0.5 or more
    samples) and wait until its span arrived: every span made before it has arrived too."""
    trace = low_trace_id()
    assert send(agent, "GET", "/echo/marker", headers={"traceparent": traceparent(trace, parent_id(), "01")}).status == 200
    receiver.wait_for_spans(lambda s: s.trace_id == trace)


def with_request_id(receiver: OtlpReceiver, request_id: str) -> list[ReceivedSpan]:
    return [s for s in receiver.spans() if s.attributes.get("http.request.header.x-request-id") == (request_id,)]


CASES = [
    # agent, incoming flags (None: no traceparent), which trace id, exported, flag the app gets
    ("trust-ratio-0", "01", "any", True, "01"),
    ("trust-ratio-0", "00", "any", False, "00"),
    ("trust-ratio-0", None, "any", False, "00"),
    ("trust-ratio-1", "01", "any", True, "01"),
    ("trust-ratio-1", "00", "any", False, "00"),
    ("trust-ratio-1", None, "any", True, "01"),
    ("no-trust-ratio-0.5", "01", "high", False, "00"),
    ("no-trust-ratio-0.5", "00", "high", False, "00"),
    ("no-trust-ratio-0.5", "00", "low", True, "01"),
    ("no-trust-ratio-0.5", "01", "low", True, "01"),
]


@pytest.mark.parametrize(("name", "flags", "half", "exported", "sent_flags"), CASES)
def test_sampling_decision_and_the_flag_the_app_gets(
    agents: Callable[[str], AgentProcess],
    receiver: OtlpReceiver,
    name: str,
    flags: str | None,
    half: str,
    exported: bool,
    sent_flags: str,
) -> None:
    agent = agents(name)
    trace = {"low": low_trace_id, "high": high_trace_id, "any": trace_id}[half]()
    request_id = f"req-sampling-{secrets.token_hex(6)}"
    headers = {"X-Request-ID": request_id}
    if flags is not None:
        headers["traceparent"] = traceparent(trace, parent_id(), flags)
    response = send(agent, "GET", "/echo/sampling", headers=headers)
    assert response.status == 200

    [sent] = seen_by_app(response, "traceparent")
    _, app_trace, app_parent, app_flags = split_traceparent(sent)
    assert app_flags == sent_flags
    if flags is not None:
        assert app_trace == trace  # the trace goes on, sampled or not
    if exported:
        [span] = receiver.wait_for_spans(lambda s: s.attributes.get("http.request.header.x-request-id") == (request_id,))
        assert (span.trace_id, span.span_id) == (app_trace, app_parent)
    else:
        marker(agent, receiver)
        assert with_request_id(receiver, request_id) == []


PROBES = ("/health/live", "/health/ready", "/health/startup")


def test_probes_are_not_traced_by_default(agents: Callable[[str], AgentProcess], receiver: OtlpReceiver) -> None:
    agent = agents("trust-ratio-1")
    request_id = f"req-probe-{secrets.token_hex(6)}"
    for path in PROBES:
        headers = {"traceparent": traceparent(trace_id(), parent_id(), "01"), "X-Request-ID": request_id}
        assert send(agent, "GET", path, headers=headers).status == 200
    marker(agent, receiver)
    assert with_request_id(receiver, request_id) == []


def test_probes_are_traced_with_trace_local(agents: Callable[[str], AgentProcess], receiver: OtlpReceiver) -> None:
    agent = agents("trace-local")
    for path in PROBES:
        trace = trace_id()
        status = send(agent, "GET", path, headers={"traceparent": traceparent(trace, parent_id(), "01")}).status
        [span] = receiver.wait_for_spans(lambda s, trace=trace: s.trace_id == trace)
        assert span.name == f"GET {path}"
        assert span.attributes["http.route"] == path
        assert span.attributes["http.response.status_code"] == status
        assert span.events == ()  # answered by the agent itself


@pytest.mark.parametrize("ratio", [0.0, 1e-9, 0.01, 0.25, 0.5, 0.999, 1.0])
def test_the_ratio_rule_is_the_sdks_trace_id_ratio_sampler(ratio: float) -> None:
    """Decided before the SDK, the same way: a trace sampled here is sampled by every
    ``TraceIdRatioBased`` sampler at the same ratio downstream."""
    sdk = TraceIdRatioBased(ratio)
    threshold = ratio_threshold(ratio)
    rng = random.Random(ratio)
    for _ in range(2000):
        trace = f"{rng.getrandbits(128):032x}"
        expected = sdk.should_sample(None, int(trace, 16), "span").decision is Decision.RECORD_AND_SAMPLE
        assert is_sampled(trace, None, threshold=threshold, trust_incoming=True) is expected, trace


def test_a_trusted_incoming_flag_decides_by_its_sampled_bit_alone() -> None:
    """W3C Trace Context: bit 0 of trace-flags is ``sampled``; the other bits say nothing about it."""
    for flags in range(256):
        text = f"{flags:02x}"
        assert is_sampled("0" * 32, text, threshold="", trust_incoming=True) is bool(flags & 1), text
        assert is_sampled("f" * 32, text, threshold="", trust_incoming=False) is False, text
