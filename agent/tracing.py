"""A SERVER span per proxied request, exported over OTLP/HTTP by the OpenTelemetry SDK (the ``otlp`` extra).

The request path decides first, without the SDK: :func:`is_sampled` (parent-based when the
incoming sampled flag is trusted, else a ratio on the trace id, as the SDK's
``ParentBased(TraceIdRatioBased)`` does) and the agent's own span id, which goes to the app as the
parent in ``traceparent``. A sampled request, once finished, is queued as a plain
:class:`FinishedRequest`. A worker thread encodes each batch as an OTLP request
(:mod:`agent.otlp`) and posts it, so the loop never waits for the collector, a full queue drops
(counted), and a failing or slow collector costs the requests nothing. SIGTERM flushes what is
queued within the shutdown timeout. The SDK gives the resource (``OTEL_RESOURCE_ATTRIBUTES``),
once, at start.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent import __version__
from agent.config.schema import TracingConfig
from agent.otlp import OtlpSender, encode_request, encode_span, resource_prefix

log = logging.getLogger("agent.tracing")

WARN_EVERY_S = 60.0
BATCH_SIZE = 512
EXPORT_DELAY_S = 1.0
EXPORT_TIMEOUT_S = 10.0


def ratio_threshold(ratio: float) -> str:
    """The bound the lower 64 bits of a trace id must stay under (``TraceIdRatioBased``), as 16
    lower-case hex digits: trace ids are lower-case hex, so comparing the strings compares the
    numbers, without parsing one per request. ``""`` samples nothing, ``"g"`` (above every hex
    digit) everything."""
    bound = round(ratio * (1 << 64))
    if bound <= 0:
        return ""
    return "g" if bound >= 1 << 64 else f"{bound:016x}"


def is_sampled(trace_id: str, incoming_flags: str | None, threshold: str, trust_incoming: bool) -> bool:
    """Sample this request? ``incoming_flags``: the valid incoming traceparent's flags (two
    lower-case hex digits), else None. ``threshold``: :func:`ratio_threshold`."""
    if incoming_flags is not None and trust_incoming:
        return incoming_flags[1] in "13579bdf"  # the sampled bit is the last digit's lowest
    return threshold != "" and trace_id[16:] < threshold


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
    """A bounded queue of finished requests and one worker thread that exports them in batches.

    ``export`` takes a batch and says whether the collector took it; it runs in the worker.
    """

    def __init__(self, export: Callable[[list[Any]], bool], max_queue: int) -> None:
        self._export_batch = export
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
        self._worker = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._worker.start()

    def put(self, span: Any) -> None:
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

    def shutdown(self, timeout_s: float = EXPORT_TIMEOUT_S) -> bool:
        """Export what is queued, within ``timeout_s``; True when every batch was sent (the worker
        ends only then: an empty queue may still mean a batch under way)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._worker.join(timeout_s)
        return not self._worker.is_alive()

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
            ok = self._export_batch(batch)
        except Exception:  # a bug in encoding or a network error the sender let through
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
    """Queues finished sampled requests; the export thread encodes and posts them."""

    def __init__(self, config: TracingConfig, environ: dict[str, str] | None = None) -> None:
        from opentelemetry.sdk.resources import Resource

        environ = environ if environ is not None else dict(os.environ)
        self.config = config
        resource = Resource.create(resource_attributes(config, environ)).attributes
        self._resource, self._scope = resource_prefix(resource, "sidecar-agent", __version__)
        headers = {k: v.reveal() for k, v in config.headers}
        self._sender = OtlpSender(config.endpoint, headers, EXPORT_TIMEOUT_S, environ)
        self.queue = ExportQueue(self._export, config.max_queue)

    def record(self, request: FinishedRequest) -> None:
        """Queue one finished request; it is encoded in the export thread."""
        self.queue.put(request)

    def _export(self, batch: list[FinishedRequest]) -> bool:
        return self._sender.send(encode_request(self._resource, self._scope, [encode_span(r) for r in batch]))

    def shutdown(self, timeout_s: float) -> bool:
        return self.queue.shutdown(timeout_s)


def resource_attributes(config: TracingConfig, environ: dict[str, str]) -> dict[str, str]:
    """``service.*`` and, in Kubernetes, the pod and namespace (downward API env variables);
    ``OTEL_RESOURCE_ATTRIBUTES`` is read by the SDK itself, and what is returned here wins over it.
    So ``service.name`` is left out when it is only the default and that variable names one
    (OpenTelemetry's order: ``OTEL_SERVICE_NAME``, which the config reads, then the variable)."""
    attributes = {"service.name": config.service_name, "service.version": __version__}
    if config.service_name == TracingConfig().service_name and _names_service(environ.get("OTEL_RESOURCE_ATTRIBUTES", "")):
        del attributes["service.name"]
    for key, names in (
        ("k8s.pod.name", ("POD_NAME", "K8S_POD_NAME")),
        ("k8s.namespace.name", ("POD_NAMESPACE", "K8S_NAMESPACE")),
    ):
        value = next((environ[n] for n in names if environ.get(n)), None)
        if value:
            attributes[key] = value
    return attributes


def _names_service(resource_env: str) -> bool:
    return any(item.partition("=")[0].strip() == "service.name" for item in resource_env.split(","))
