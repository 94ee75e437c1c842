"""OTLP/HTTP trace export: an ``ExportTraceServiceRequest`` written straight from finished requests.

The OpenTelemetry SDK's exporter builds a ``ReadableSpan`` and then a protobuf object per span
attribute (~53 µs a span, measured in ``bench/README.md``); a span here is a handful of byte
strings (~17 µs). The field numbers are those of ``opentelemetry-proto`` (``trace.proto``,
``common.proto``, ``resource.proto``, ``trace_service.proto``); the tests decode every payload with
its generated classes. :class:`OtlpSender` posts a payload like the SDK's OTLP/HTTP exporter: the
``OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE`` / ``CLIENT_CERTIFICATE`` / ``CLIENT_KEY`` /
``COMPRESSION`` variables, and retries on connection errors (not TLS verification failures) and
429/502/503/504 with exponential backoff (or ``Retry-After``) within one deadline.
"""

from __future__ import annotations

import gzip
import random
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["OtlpSender", "SpanData", "encode_request", "encode_span"]

RETRYABLE = frozenset({429, 502, 503, 504})
MAX_BACKOFF_S = 32.0
# SpanFlags: the sampled trace flag, and "is_remote is known" (0x100) with "the parent is remote" (0x200).
FLAGS_HAS_IS_REMOTE = 0x100
FLAGS_IS_REMOTE = 0x200

_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the length, the payload."""
    return tag + _varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message: string 1, bool 2, int 3, double 4, array 5 (``ArrayValue.values`` 1)."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8", "replace"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return _field(b"\x2a", b"".join(_field(b"\x0a", any_value(item)) for item in value))
    return _field(b"\x0a", str(value).encode("utf-8", "replace"))


_keys: dict[str, bytes] = {}  # attribute names are a small fixed set: each encoded once


def _key(key: str) -> bytes:
    encoded = _keys.get(key)
    if encoded is None:
        encoded = _field(b"\x0a", key.encode("utf-8", "replace"))
        if len(_keys) < 1024:
            _keys[key] = encoded
    return encoded


def key_values(tag: bytes, attributes: Mapping[str, Any]) -> bytes:
    """Repeated ``KeyValue`` (key 1, value 2) under ``tag``."""
    return b"".join(_field(tag, _key(key) + _field(b"\x12", any_value(value))) for key, value in attributes.items())


class SpanData(Protocol):
    """What :func:`encode_span` needs (a :class:`agent.tracing.FinishedRequest` is one)."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    tracestate: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    upstream_ns: int | None
    is_error: bool


UPSTREAM_EVENT = _field(b"\x12", b"upstream request started")


def encode_span(span: SpanData) -> bytes:
    """A ``Span`` (SERVER): ids 1, 2, 4; trace_state 3; name 5; kind 6; times 7, 8 (fixed64);
    attributes 9; events 11 (time 1, name 2); status 15 (code 3); flags 16 (fixed32)."""
    parts = [b"\x0a\x10", bytes.fromhex(span.trace_id), b"\x12\x08", bytes.fromhex(span.span_id)]
    if span.tracestate:
        parts.append(_field(b"\x1a", span.tracestate.encode("latin-1")))
    flags = 1 | FLAGS_HAS_IS_REMOTE  # sampled: only sampled requests become spans
    if span.parent_id is not None:
        parts.append(b"\x22\x08" + bytes.fromhex(span.parent_id))
        flags |= FLAGS_IS_REMOTE  # the parent came in a traceparent header
    parts.append(_field(b"\x2a", span.name.encode("utf-8", "replace")))
    parts.append(b"\x30\x02\x39" + _pack_q(span.start_ns) + b"\x41" + _pack_q(span.end_ns))  # kind 2: SPAN_KIND_SERVER
    parts.append(key_values(b"\x4a", span.attributes))
    if span.upstream_ns is not None:
        parts.append(_field(b"\x5a", b"\x09" + _pack_q(span.upstream_ns) + UPSTREAM_EVENT))
    if span.is_error:
        parts.append(b"\x7a\x02\x18\x02")  # Status{code: STATUS_CODE_ERROR}
    parts.append(b"\x85\x01" + _pack_i(flags))
    return b"".join(parts)


def resource_prefix(resource: Mapping[str, Any], scope_name: str, scope_version: str) -> tuple[bytes, bytes]:
    """The constant parts of every request: ``Resource`` (attributes 1) and ``InstrumentationScope``
    (name 1, version 2), each already a field of its parent message."""
    scope = _field(b"\x0a", _field(b"\x0a", scope_name.encode()) + _field(b"\x12", scope_version.encode()))
    return _field(b"\x0a", key_values(b"\x0a", resource)), scope


def encode_request(resource: bytes, scope: bytes, spans: Iterable[bytes]) -> bytes:
    """``ExportTraceServiceRequest{resource_spans 1: ResourceSpans{resource 1, scope_spans 2:
    ScopeSpans{scope 1, spans 2}}}`` from encoded spans and :func:`resource_prefix`."""
    scope_spans = scope + b"".join(_field(b"\x12", span) for span in spans)
    return _field(b"\x0a", resource + _field(b"\x12", scope_spans))


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_TRACES_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``."""
    return environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or None


class OtlpSender:
    """POSTs encoded requests to one OTLP/HTTP endpoint (a ``requests`` session, kept alive)."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout_s: float, environ: Mapping[str, str]) -> None:
        import requests

        # The two exception classes ``send`` tells apart (requests is imported only when tracing is on).
        self._ssl_error: type[Exception] = requests.exceptions.SSLError
        self._request_error: type[Exception] = requests.RequestException
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._session = requests.Session()
        self._session.headers.update({"Content-Type": "application/x-protobuf", **headers})
        self._gzip = (_env(environ, "COMPRESSION") or "").lower() == "gzip"
        if self._gzip:
            self._session.headers["Content-Encoding"] = "gzip"
        # Passed with every request: a session's own ``verify`` loses to REQUESTS_CA_BUNDLE.
        self._verify: str | bool = _env(environ, "CERTIFICATE") or True
        cert, key = _env(environ, "CLIENT_CERTIFICATE"), _env(environ, "CLIENT_KEY")
        self._cert: str | tuple[str, str] | None = ((cert, key) if key else cert) if cert else None

    def send(self, payload: bytes) -> bool:
        """True when the collector took it; retries what may pass later until the deadline."""
        data = gzip.compress(payload, 6) if self._gzip else payload
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(8):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            retry_after: float | None = None
            try:
                response = self._session.post(self.endpoint, data=data, timeout=remaining, verify=self._verify, cert=self._cert)
            except self._ssl_error:
                return False  # a certificate that does not verify will not verify in a second either
            except self._request_error:
                retryable = True
            else:
                with response:
                    if 200 <= response.status_code < 300:
                        return True
                    retryable = response.status_code in RETRYABLE
                    retry_after = _retry_after(response.headers.get("Retry-After"))
            if not retryable:
                return False
            backoff = retry_after if retry_after is not None else min(2**attempt * random.uniform(0.8, 1.2), MAX_BACKOFF_S)
            if backoff > deadline - time.monotonic():
                return False
            time.sleep(backoff)
        return False


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None
