"""A real OTLP/HTTP trace receiver for tests: what a collector's ``otlphttp`` receiver does.

``OtlpReceiver().start()`` serves ``POST /v1/traces`` on 127.0.0.1 from its own thread
(:mod:`tests.support.threaded_app`), decodes each body with ``opentelemetry-proto``
(``ExportTraceServiceRequest``; aiohttp inflates ``gzip``/``deflate`` bodies as they are read, and
the ``Content-Encoding`` stays in :attr:`Export.headers`) and keeps every
span as a :class:`ReceivedSpan`. It can be told to misbehave, as a collector in trouble does:

* ``set_mode("ok")``: 200 with an empty ``ExportTraceServiceResponse`` (the default)
* ``set_mode("slow", delay_s=S)``: the same, after S seconds (the spans are kept only then)
* ``set_mode("error")``: 500, spans not kept (the exporter may retry)
* ``set_mode("throttle", delay_s=S)``: the next export is answered 429 with ``Retry-After: S``
  (spans not kept), then the mode is ``ok`` again
* ``down()`` / ``up()``: nothing listens on its port (connection refused), then it listens again
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.support.threaded_app import ThreadedApp

MODES = ("ok", "slow", "error", "throttle")
PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector decoded it; ids are lower-case hex, "" when absent."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    trace_state: str
    kind: str  # "SERVER", "CLIENT", ... (SpanKind without its SPAN_KIND_ prefix)
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    status: str  # "UNSET", "OK", "ERROR"
    events: tuple[str, ...]
    start_ns: int
    end_ns: int
    flags: int


@dataclass
class Export:
    """One export request as it arrived (headers lower-cased)."""

    headers: dict[str, str]
    spans: int
    answered: int
    at: float = field(default_factory=time.monotonic)


@dataclass
class ReceiverState:
    mode: str = "ok"
    delay_s: float = 0.0
    spans: list[ReceivedSpan] = field(default_factory=list)
    exports: list[Export] = field(default_factory=list)
    handling: int = 0  # export requests being answered right now (a slow one waits in here)
    lock: threading.Lock = field(default_factory=threading.Lock)


STATE = web.AppKey("otlp_state", ReceiverState)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if kind is None else getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def decode(body: bytes) -> list[ReceivedSpan]:
    """Every span in one OTLP/HTTP protobuf body (already inflated)."""
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        trace_state=span.trace_state,
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        scope=scope_spans.scope.name,
                        status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                        events=tuple(event.name for event in span.events),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        flags=span.flags,
                    )
                )
    return spans


async def _traces(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.read()
    if request.content_type != PROTOBUF:
        return web.Response(status=415, text=f"expected {PROTOBUF}, got {request.content_type}")
    try:
        spans = decode(body)  # already inflated by aiohttp when Content-Encoding named gzip or deflate
    except Exception as exc:  # a body the real receiver would refuse too
        return web.Response(status=400, text=f"undecodable OTLP body: {exc!r}")
    mode = state.mode
    if mode == "slow":
        state.handling += 1
        try:
            await asyncio.sleep(state.delay_s)
        finally:
            state.handling -= 1
    status = 500 if mode == "error" else 429 if mode == "throttle" else 200
    with state.lock:
        state.exports.append(Export({k.lower(): v for k, v in request.headers.items()}, len(spans), status))
        if status == 200:
            state.spans.extend(spans)
        if mode == "throttle":
            state.mode = "ok"
    if status == 429:
        return web.Response(status=429, headers={"Retry-After": f"{state.delay_s:g}"}, text="slow down")
    if status != 200:
        return web.Response(status=status, text="collector broken on purpose")
    return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)


def make_receiver_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = ReceiverState()
    app.router.add_post(PATH, _traces)
    return app


class OtlpReceiver(ThreadedApp):
    def __init__(self, port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(make_receiver_app(), port, tls)
        self.state = self.app[STATE]

    @property
    def endpoint(self) -> str:
        """What ``tracing.endpoint`` is set to."""
        return self.url + PATH

    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.state.mode, self.state.delay_s = mode, delay_s

    def spans(self) -> list[ReceivedSpan]:
        with self.state.lock:
            return list(self.state.spans)

    def exports(self) -> list[Export]:
        with self.state.lock:
            return list(self.state.exports)

    def clear(self) -> None:
        with self.state.lock:
            self.state.spans.clear()
            self.state.exports.clear()

    def wait_for_spans(
        self, predicate: Callable[[ReceivedSpan], bool] = lambda span: True, *, count: int = 1, timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """The received spans ``predicate`` holds for, once there are ``count`` of them (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [span for span in self.spans() if predicate(span)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} matching spans after {timeout}s, wanted {count}; all: {self.spans()}")
            time.sleep(0.05)
