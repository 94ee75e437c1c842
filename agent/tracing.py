"""A SERVER span per proxied request, exported over OTLP/HTTP by the OpenTelemetry SDK (the ``otlp`` extra).

The request path decides first, without the SDK: :func:`is_sampled` (parent-based when the
incoming sampled flag is trusted, else a ratio on the trace id, as the SDK's
``ParentBased(TraceIdRatioBased)`` does) and the agent's own span id, which goes to the app as the
parent in ``traceparent``. Only a sampled request, once finished, becomes a span object. Spans wait
in a bounded queue and a worker thread exports them in batches: the event loop never waits for the
collector, a full queue drops (counted), and a failing or slow collector costs the requests
nothing. SIGTERM flushes what is queued within the shutdown timeout.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from agent import __version__
from agent.config.schema import TracingConfig

log = logging.getLogger("agent.tracing")

WARN_EVERY_S = 60.0
BATCH_SIZE = 512
EXPORT_DELAY_S = 1.0
EXPORT_TIMEOUT_S = 10.0


def ratio_threshold(ratio: float) -> int:
    """The bound the lower 64 bits of a trace id must stay under (``TraceIdRatioBased``)."""
    return round(ratio * (1 << 64))


def is_sampled(trace_id: str, incoming_flags: str | None, *, threshold: int, trust_incoming: bool) -> bool:
    """Sample this request? ``incoming_flags``: the valid incoming traceparent's flags, else None."""
    if incoming_flags is not None and trust_incoming:
        return int(incoming_flags, 16) & 1 == 1
    return threshold > 0 and int(trace_id[16:], 16) < threshold


@dataclass(slots=True)
class FinishedRequest:
    """What a span is made of, collected by the proxy once the response ended."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None  # the incoming traceparent's parent, when there was a valid one
    tracestate: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    upstream_ns: int | None  # when forwarding to the app began (connecting included), if it did
    is_error: bool


class ExportQueue:
    """A span processor: a bounded queue and one worker thread that exports batches."""

    def __init__(self, exporter: Any, max_queue: int) -> None:
        self._exporter = exporter
        self._max_queue = max_queue
        # Wake the worker before the queue is full: with max_queue under BATCH_SIZE a whole batch
        # never gathers, and spans would leave only on the timer (max_queue a second at most).
        self._wake_at = max(1, min(BATCH_SIZE, max_queue // 2))
        self._spans: collections.deque[Any] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self.exported = 0
        self.dropped = 0  # the queue was full
        self.failed = 0  # spans in batches the collector did not take
        self._warned_at = -WARN_EVERY_S  # one warning a minute about lost spans, whatever the reason
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    # SpanProcessor interface (duck-typed: the SDK calls these)
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:  # newer SDKs call it before on_end
        pass

    def on_end(self, span: Any) -> None:
        with self._wake:
            if len(self._spans) >= self._max_queue:
                self.dropped += 1
                self._warn("span queue full: spans dropped", self.dropped)
                return
            self._spans.append(span)
            if len(self._spans) >= self._wake_at:
                self._wake.notify()

    @property
    def pending(self) -> int:
        return len(self._spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.shutdown(timeout_millis / 1000) or True

    def shutdown(self, timeout_s: float = EXPORT_TIMEOUT_S) -> bool:
        """Export what is queued, within ``timeout_s``; True when every batch was sent (the worker
        ends only then: an empty queue may still mean a batch under way)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._spans and not self._stopping:
                    self._wake.wait(EXPORT_DELAY_S)
                batch = [self._spans.popleft() for _ in range(min(BATCH_SIZE, len(self._spans)))]
                stopping = self._stopping
            if batch:
                self._export(batch)
            elif stopping:
                return

    def _export(self, batch: list[Any]) -> None:
        try:
            ok = self._exporter.export(batch).name == "SUCCESS"
        except Exception:  # the exporter's own bug or a network error it let through
            ok = False
        if ok:
            self.exported += len(batch)
        else:
            with self._wake:  # one timer for both threads' warnings
                self.failed += len(batch)
                self._warn("span export failed: spans lost", self.failed)

    def _warn(self, message: str, total: int) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(message, extra={"total": total, "queue_full": self.dropped, "export_failed": self.failed})


class Tracer:
    """Turns finished sampled requests into spans; owns the SDK's provider and the export queue."""

    def __init__(self, config: TracingConfig, environ: dict[str, str] | None = None) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.id_generator import IdGenerator
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON

        class PresetIds(IdGenerator):
            """The ids the proxy already chose (and sent to the app) for the next span."""

            trace_id = 0
            span_id = 0

            def generate_span_id(self) -> int:
                return self.span_id

            def generate_trace_id(self) -> int:
                return self.trace_id

        self.config = config
        self.threshold = ratio_threshold(config.sample_ratio)
        self._ids = PresetIds()
        exporter = OTLPSpanExporter(
            endpoint=config.endpoint, headers={k: v.reveal() for k, v in config.headers}, timeout=EXPORT_TIMEOUT_S
        )
        self.queue = ExportQueue(exporter, config.max_queue)
        provider = TracerProvider(
            resource=Resource.create(resource_attributes(config, environ or dict(os.environ))),
            id_generator=self._ids,
            sampler=ALWAYS_ON,
            # The server flushes within the shutdown timeout; the SDK's own atexit flush would wait
            # for the export thread again, up to EXPORT_TIMEOUT_S more, after "agent stopped".
            shutdown_on_exit=False,
        )
        provider.add_span_processor(self.queue)  # type: ignore[arg-type]
        self._provider = provider
        self._tracer = provider.get_tracer("sidecar-agent", __version__)

    def record(self, request: FinishedRequest) -> None:
        """One SERVER span, ended at once with the request's own times."""
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

        context = None
        if request.parent_id is not None:
            state = TraceState.from_header([request.tracestate]) if request.tracestate else None
            parent = SpanContext(int(request.trace_id, 16), int(request.parent_id, 16), True, TraceFlags(1), state)
            context = trace.set_span_in_context(NonRecordingSpan(parent))
        self._ids.trace_id, self._ids.span_id = int(request.trace_id, 16), int(request.span_id, 16)
        span = self._tracer.start_span(
            request.name, context=context, kind=SpanKind.SERVER, attributes=request.attributes, start_time=request.start_ns
        )
        if request.upstream_ns is not None:
            span.add_event("upstream request started", timestamp=request.upstream_ns)
        if request.is_error:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=request.end_ns)

    def shutdown(self, timeout_s: float) -> bool:
        return self.queue.shutdown(timeout_s)


def resource_attributes(config: TracingConfig, environ: dict[str, str]) -> dict[str, str]:
    """``service.*`` and, in Kubernetes, the pod and namespace (downward API env variables);
    ``OTEL_RESOURCE_ATTRIBUTES`` is read by the SDK itself."""
    attributes = {"service.name": config.service_name, "service.version": __version__}
    for key, names in (
        ("k8s.pod.name", ("POD_NAME", "K8S_POD_NAME")),
        ("k8s.namespace.name", ("POD_NAMESPACE", "K8S_NAMESPACE")),
    ):
        value = next((environ[n] for n in names if environ.get(n)), None)
        if value:
            attributes[key] = value
    return attributes
