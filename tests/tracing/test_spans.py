"""What a span says: a real agent in front of the real test app, exporting to a real OTLP/HTTP
receiver that decodes the protobuf (``tests/support/otlp.py``).

One SERVER span per proxied request, named ``METHOD route`` with the folded route, carrying the
HTTP server semantic conventions' attributes; the agent's span is the parent the app sees in
``traceparent`` and the child of the incoming one, in the same trace. 5xx answers (the app's or
the agent's own, such as a 502 from a dead upstream) set ``error.type`` and the ERROR status; a
4xx leaves the status unset (server spans, semantic conventions ``http-spans.md``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent import __version__
from tests.support.agent import AgentProcess
from tests.support.net import free_port
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.upstream import UpstreamProcess
from tests.tracing.traced import parent_id, raw_status, seen_by_app, send, split_traceparent, trace_id, traced_config, traceparent

SERVICE = "checkout-api"
API_KEY = "otlp-api-key-4f1d2c"
USER_AGENT = "tracing-tests/1.0"
MAX_BODY_BYTES = 1024


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture(scope="module")
def agent(upstream: UpstreamProcess, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """Every request sampled (ratio 1, incoming flags trusted), an API key on each export."""
    upstream.set_mode("healthy")
    config = traced_config(
        upstream.url,
        receiver.endpoint,
        {"sample_ratio": 1.0, "service_name": SERVICE, "headers": {"x-api-key": API_KEY}},
        upstream={"read_timeout_s": 1.0},
        proxy={"max_body_bytes": MAX_BODY_BYTES},
    )
    process = AgentProcess(tmp_path_factory.mktemp("spans"), config).start()
    yield process
    process.stop()


def the_span(receiver: OtlpReceiver, predicate: Callable[[ReceivedSpan], bool]) -> ReceivedSpan:
    spans = receiver.wait_for_spans(predicate)
    time.sleep(0.1)  # a second span for the same request would be in the same or the next export
    spans = [span for span in receiver.spans() if predicate(span)]
    assert len(spans) == 1, spans
    return spans[0]


def by_request_id(request_id: str) -> Callable[[ReceivedSpan], bool]:
    return lambda span: span.attributes.get("http.request.header.x-request-id") == (request_id,)


def test_a_proxied_request_is_one_server_span_named_by_its_folded_route(agent: AgentProcess, receiver: OtlpReceiver) -> None:
    created = send(
        agent, "POST", "/api/v1/plans", body=json.dumps({"name": "gold"}).encode(), headers={"Content-Type": "application/json"}
    )
    assert created.status == 201, created.body
    plan_id = created.json()["id"]
    trace, parent = trace_id(), parent_id()
    started_ns = time.time_ns()
    response = send(
        agent,
        "GET",
        f"/api/v1/plans/{plan_id}?expand=prices",
        headers={"traceparent": traceparent(trace, parent, "01"), "X-Request-ID": "req-plans-1", "User-Agent": USER_AGENT},
    )
    ended_ns = time.time_ns()
    assert response.status == 200

    span = the_span(receiver, lambda s: s.trace_id == trace)
    assert span.name == "GET /api/v1/plans/{id}"
    assert span.kind == "SERVER"
    assert span.scope == "sidecar-agent"
    assert span.status == "UNSET"
    attributes = dict(span.attributes)
    upstream_ms = attributes.pop("sidecar.upstream.duration_ms")
    assert attributes == {
        "http.request.method": "GET",
        "url.path": f"/api/v1/plans/{plan_id}",  # never the query: it may hold what must not leave
        "url.scheme": "http",
        "http.route": "/api/v1/plans/{id}",
        "http.response.status_code": 200,
        "network.protocol.version": "1.1",
        "http.request.header.x-request-id": ("req-plans-1",),
        "server.address": "127.0.0.1",
        "client.address": "127.0.0.1",
        "user_agent.original": USER_AGENT,
    }
    assert started_ns <= span.start_ns <= span.end_ns <= ended_ns
    assert 0 < upstream_ms <= (span.end_ns - span.start_ns) / 1e6 + 0.01
    assert span.events == ("upstream request started",)
    assert span.resource["service.name"] == SERVICE
    assert span.resource["service.version"] == __version__
    # The configured headers go with every export (a vendor's API key).
    assert {export.headers.get("x-api-key") for export in receiver.exports()} == {API_KEY}


def test_the_agents_span_is_the_apps_parent_and_the_callers_child(agent: AgentProcess, receiver: OtlpReceiver) -> None:
    trace, parent = trace_id(), parent_id()
    response = send(
        agent, "GET", "/echo/orders/7", headers={"traceparent": traceparent(trace, parent, "01"), "tracestate": "vendor=abc"}
    )
    assert response.status == 200
    span = the_span(receiver, lambda s: s.trace_id == trace)

    [sent] = seen_by_app(response, "traceparent")
    version, app_trace, app_parent, flags = split_traceparent(sent)
    assert (version, app_trace, flags) == ("00", trace, "01")
    assert app_parent == span.span_id  # the app's spans hang under the agent's
    assert span.parent_span_id == parent  # and the agent's under the caller's
    assert span.span_id not in (parent, "0" * 16)
    assert span.trace_state == "vendor=abc"
    assert seen_by_app(response, "tracestate") == ["vendor=abc"]
    assert span.name == "GET /echo/orders/{id}"


@pytest.mark.parametrize(
    "incoming",
    [None, "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"],
    ids=["none", "version-ff", "zero-trace-id"],
)
def test_without_a_valid_traceparent_the_span_is_a_root_and_the_app_gets_its_ids(
    agent: AgentProcess, receiver: OtlpReceiver, incoming: str | None
) -> None:
    request_id = f"req-root-{trace_id()[:8]}"
    headers = {"X-Request-ID": request_id} | ({"traceparent": incoming} if incoming else {})
    response = send(agent, "GET", "/echo/root", headers=headers)
    span = the_span(receiver, by_request_id(request_id))
    assert span.parent_span_id == ""
    assert span.trace_id not in ("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32)
    assert seen_by_app(response, "traceparent") == [traceparent(span.trace_id, span.span_id, "01")]


@pytest.mark.parametrize(
    ("path", "status", "error_type", "span_status"),
    [
        ("/status/500", 500, "500", "ERROR"),
        ("/status/503", 503, "503", "ERROR"),
        ("/status/404", 404, None, "UNSET"),
        ("/status/204", 204, None, "UNSET"),
        ("/slow?delay_s=3", 504, "UPSTREAM_TIMEOUT", "ERROR"),  # the agent's read deadline is 1 s
    ],
)
def test_error_type_and_status(
    agent: AgentProcess, receiver: OtlpReceiver, path: str, status: int, error_type: str | None, span_status: str
) -> None:
    request_id = f"req-status-{status}-{trace_id()[:8]}"
    assert send(agent, "GET", path, headers={"X-Request-ID": request_id}).status == status
    span = the_span(receiver, by_request_id(request_id))
    assert span.attributes["http.response.status_code"] == status
    assert span.attributes.get("error.type") == error_type
    assert span.status == span_status


def test_an_agent_4xx_keeps_its_error_type_but_not_the_error_status(agent: AgentProcess, receiver: OtlpReceiver) -> None:
    """A body over ``proxy.max_body_bytes`` (chunked, so it is found while streaming) is refused
    by the agent with 413: the reason is kept in ``error.type``, but a 4xx is the client's doing,
    so a server span's status stays unset (semantic conventions, ``http-spans.md`` "Status")."""
    request_id = f"req-413-{trace_id()[:8]}"
    chunked = (b"%x\r\n" % (MAX_BODY_BYTES * 2)) + b"x" * (MAX_BODY_BYTES * 2) + b"\r\n0\r\n\r\n"
    raw = (
        b"POST /echo/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nX-Request-ID: "
        + request_id.encode()
        + b"\r\n\r\n"
        + chunked
    )
    assert raw_status(agent, raw) == 413
    span = the_span(receiver, by_request_id(request_id))
    assert span.attributes["http.response.status_code"] == 413
    assert span.attributes["error.type"] == "PAYLOAD_TOO_LARGE"
    assert span.status == "UNSET"


def test_a_dead_upstream_is_a_502_span_with_the_agents_error_type(
    agent_factory: Callable[..., AgentProcess], receiver: OtlpReceiver
) -> None:
    dead = agent_factory(traced_config(f"http://127.0.0.1:{free_port()}", receiver.endpoint, {"sample_ratio": 1.0}))
    request_id = f"req-502-{trace_id()[:8]}"
    assert send(dead, "GET", "/api/v1/plans/12", headers={"X-Request-ID": request_id}).status == 502
    span = the_span(receiver, by_request_id(request_id))
    assert span.name == "GET /api/v1/plans/{id}"
    assert span.attributes["http.response.status_code"] == 502
    assert span.attributes["error.type"] == "UPSTREAM_UNAVAILABLE"
    assert span.status == "ERROR"
    # The agent tried the app (the connect failed): the event says when it began, nothing claims an answer.
    assert span.events == ("upstream request started",)


@pytest.mark.parametrize(
    ("host", "address"),
    [("api.example.com:8443", "api.example.com"), ("api.example.com", "api.example.com"), ("[::1]:8080", "::1")],
)
def test_server_address_is_the_host_without_its_port(
    agent: AgentProcess, receiver: OtlpReceiver, host: str, address: str
) -> None:
    request_id = f"req-host-{trace_id()[:8]}"
    assert send(agent, "GET", "/echo/host", headers={"Host": host, "X-Request-ID": request_id}).status == 200
    assert the_span(receiver, by_request_id(request_id)).attributes["server.address"] == address


def test_http10_and_unknown_methods(agent: AgentProcess, receiver: OtlpReceiver) -> None:
    http10 = f"req-http10-{trace_id()[:8]}"
    assert raw_status(agent, f"GET /echo/old HTTP/1.0\r\nX-Request-ID: {http10}\r\n\r\n".encode()) == 200
    assert the_span(receiver, by_request_id(http10)).attributes["network.protocol.version"] == "1.0"

    odd = f"req-odd-{trace_id()[:8]}"
    assert send(agent, "PURGE", "/echo/cache", headers={"X-Request-ID": odd}).status == 200
    span = the_span(receiver, by_request_id(odd))
    assert span.name == "HTTP /echo/cache"  # the semantic conventions' name for an unknown method
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"


def test_behind_a_trusted_proxy_the_client_is_the_one_it_forwarded_for(
    upstream: UpstreamProcess, receiver: OtlpReceiver, tmp_path: Any
) -> None:
    """Semantic conventions: ``client.address`` is the client behind intermediaries when known;
    the connection's own peer goes to ``network.peer.address``. An untrusted peer's header is not
    believed (the module's agent, without trusted proxies, is checked above)."""
    config = traced_config(upstream.url, receiver.endpoint, {"sample_ratio": 1.0}, proxy={"trusted_proxies": ["127.0.0.0/8"]})
    process = AgentProcess(tmp_path, config).start()
    try:
        trace = trace_id()
        forwarded = "203.0.113.9, 198.51.100.7"
        headers = {"traceparent": traceparent(trace, parent_id(), "01"), "X-Forwarded-For": forwarded}
        assert send(process, "GET", "/echo/behind-lb", headers=headers).status == 200
        span = the_span(receiver, lambda s: s.trace_id == trace)
        assert span.attributes["client.address"] == "198.51.100.7"
        assert span.attributes["network.peer.address"] == "127.0.0.1"
    finally:
        process.stop()


def test_an_untrusted_peers_forwarded_for_does_not_change_the_client(agent: AgentProcess, receiver: OtlpReceiver) -> None:
    trace = trace_id()
    headers = {"traceparent": traceparent(trace, parent_id(), "01"), "X-Forwarded-For": "203.0.113.9"}
    assert send(agent, "GET", "/echo/spoofed", headers=headers).status == 200
    span = the_span(receiver, lambda s: s.trace_id == trace)
    assert span.attributes["client.address"] == "127.0.0.1"
    assert "network.peer.address" not in span.attributes
