"""The agent's OTLP encoding, decoded by the official schema (``opentelemetry-proto``'s generated
classes): every field of every span comes back as it went in, whatever the attribute values."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.otlp import encode_request, encode_span, resource_prefix
from agent.tracing import FinishedRequest

hex_id = lambda n: st.binary(min_size=n, max_size=n).filter(any).map(bytes.hex)  # noqa: E731
text = st.text(max_size=300)
value = st.one_of(
    text,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.tuples(text, text).map(tuple),
    st.lists(text, max_size=3).map(tuple),
)
requests = st.builds(
    FinishedRequest,
    name=text,
    trace_id=hex_id(16),
    span_id=hex_id(8),
    parent_id=st.none() | hex_id(8),
    tracestate=st.none() | st.from_regex(r"[a-z]{1,8}=[a-z0-9]{1,16}(,[a-z]{1,8}=[a-z0-9]{1,16}){0,3}", fullmatch=True),
    start_ns=st.integers(min_value=0, max_value=2**64 - 1),
    end_ns=st.integers(min_value=0, max_value=2**64 - 1),
    attributes=st.dictionaries(st.text(min_size=1, max_size=40), value, max_size=12),
    upstream_ns=st.none() | st.integers(min_value=0, max_value=2**64 - 1),
    is_error=st.booleans(),
)


def decoded(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(decoded(item) for item in v.array_value.values)
    return getattr(v, kind)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float):
        return isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(st.lists(requests, min_size=1, max_size=5), st.dictionaries(st.text(min_size=1, max_size=20), text, max_size=4))
def test_every_span_field_decodes_as_it_went_in(batch: list[FinishedRequest], resource: dict[str, str]) -> None:
    prefix, scope = resource_prefix(resource, "sidecar-agent", "1.2.3")
    message = ExportTraceServiceRequest.FromString(encode_request(prefix, scope, [encode_span(r) for r in batch]))

    [resource_spans] = message.resource_spans
    assert {kv.key: decoded(kv.value) for kv in resource_spans.resource.attributes} == resource
    [scope_spans] = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("sidecar-agent", "1.2.3")
    assert len(scope_spans.spans) == len(batch)
    for span, request in zip(scope_spans.spans, batch, strict=True):
        assert span.trace_id.hex() == request.trace_id and span.span_id.hex() == request.span_id
        assert span.parent_span_id.hex() == (request.parent_id or "")
        assert span.trace_state == (request.tracestate or "")
        assert span.name == request.name and span.kind == Span.SPAN_KIND_SERVER
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (request.start_ns, request.end_ns)
        attributes = {kv.key: decoded(kv.value) for kv in span.attributes}
        assert attributes.keys() == request.attributes.keys()
        assert all(same(attributes[k], v) for k, v in request.attributes.items()), (attributes, request.attributes)
        if request.upstream_ns is None:
            assert list(span.events) == []
        else:
            [event] = span.events
            assert (event.name, event.time_unix_nano) == ("upstream request started", request.upstream_ns)
        assert span.status.code == (Status.STATUS_CODE_ERROR if request.is_error else Status.STATUS_CODE_UNSET)
        remote = 0x200 if request.parent_id is not None else 0
        assert span.flags == 0x100 | remote | 0x01


def test_otel_resource_attributes_service_name_wins_over_the_default_only(monkeypatch: Any) -> None:
    """OpenTelemetry's order: OTEL_SERVICE_NAME (read by the config), then OTEL_RESOURCE_ATTRIBUTES,
    then the default; a name set in the file always wins."""
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

    from agent.config import build_config
    from agent.tracing import Tracer

    def service_name(raw: dict[str, Any]) -> str:
        tracer = Tracer(build_config({"tracing": {"enabled": True, **raw}}, {}, "test").tracing)
        try:
            resource = ResourceSpans.FromString(tracer._resource).resource  # the encoded Resource field
            return next(kv.value.string_value for kv in resource.attributes if kv.key == "service.name")
        finally:
            tracer.shutdown(1.0)

    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments, service.name=orders")
    assert service_name({}) == "orders"
    assert service_name({"service_name": "checkout"}) == "checkout"
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    assert service_name({}) == "sidecar-agent"
