"""What a traced request's span says (OpenTelemetry HTTP server semantic conventions, v1.26+).

Pure: from the request head and what happened to it, a :class:`agent.tracing.FinishedRequest`.
"""

from __future__ import annotations

import time
from typing import Any, Final

from agent.proxy.request_head import RequestHead
from agent.tracing import FinishedRequest

KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def finished_request(
    head: RequestHead,
    *,
    route: str,
    status: int,
    started: float,
    ended: float,
    upstream_started: float,
    client_ip: str | None,
    error_type: str | None,
    trusted: bool = False,
) -> FinishedRequest:
    """``started``/``ended``/``upstream_started`` are ``time.perf_counter()`` readings (0: never);
    ``upstream_started``: when forwarding to the app began (connecting included); ``client_ip``:
    the connection's peer; ``trusted``: that peer is a trusted proxy (``proxy.trusted_proxies``)."""
    method = head.method.decode("latin-1")
    ids = head.ids
    now_ns = time.time_ns()

    def to_ns(perf: float) -> int:  # one wall-clock reading for all three times
        return now_ns - int((ended - perf) * 1e9)

    attributes: dict[str, Any] = {
        "http.request.method": method if method in KNOWN_METHODS else "_OTHER",
        "url.path": head.path[:2048].decode("latin-1"),
        "url.scheme": "https" if head.https else "http",
        "http.route": route,
        "http.response.status_code": status,
        "network.protocol.version": "1.1" if head.http11 else "1.0",
        "http.request.header.x-request-id": (ids.request_id,),
    }
    if head.host:
        attributes["server.address"] = _host_name(head.host)
    client = client_address(head, client_ip, trusted)
    if client:
        attributes["client.address"] = client
    if client != client_ip and client_ip:
        attributes["network.peer.address"] = client_ip
    if head.user_agent:
        attributes["user_agent.original"] = head.user_agent[:512].decode("latin-1")
    if method not in KNOWN_METHODS:
        attributes["http.request.method_original"] = method[:16]
    if upstream_started:
        attributes["sidecar.upstream.duration_ms"] = round((ended - upstream_started) * 1000, 3)
    error = error_type or (str(status) if status >= 500 else None)
    if error is not None:
        attributes["error.type"] = error
    # A 4xx is the client's doing: a server span's status stays unset (http-spans.md "Status").
    return FinishedRequest(
        name=f"{method if method in KNOWN_METHODS else 'HTTP'} {route}",
        trace_id=ids.trace_id,
        span_id=ids.span_id,
        parent_id=ids.parent_id,
        tracestate=ids.tracestate.decode("latin-1") if ids.tracestate else None,
        start_ns=to_ns(started),
        end_ns=now_ns,
        attributes=attributes,
        upstream_ns=to_ns(upstream_started) if upstream_started else None,
        is_error=status >= 500,
    )


def client_address(head: RequestHead, peer: str | None, trusted: bool) -> str | None:
    """``client.address``: the client behind a trusted proxy (the last ``X-Forwarded-For`` entry,
    the address that proxy saw), else the connection's peer (semantic conventions: "the client
    address behind any intermediaries ... if it's available")."""
    if trusted and head.xff:
        last = head.xff.rsplit(b",", 1)[-1].strip()
        if last:
            return last[:64].decode("latin-1")
    return peer


def _host_name(host: bytes) -> str:
    """``server.address``: the Host without its port, an IPv6 literal without its brackets."""
    if host.startswith(b"["):
        return host[1 : host.find(b"]")].decode("latin-1")
    return host.rsplit(b":", 1)[0].decode("latin-1")
