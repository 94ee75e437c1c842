"""The main listener's settings, built once from the config: the one place the proxy reads it.

Rules from ``agent.rules`` are adapted to bytes here (lower-case header names, pre-encoded
lines), so the per-request path only compares and concatenates.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from typing import Final

from agent import __version__
from agent.config import AgentConfig
from agent.proxy.wire import HOP_BY_HOP, REQUEST_REPLACED
from agent.rules.cors import Cors
from agent.rules.ids import RequestIdRule
from agent.rules.security_headers import SecurityHeaders
from agent.tls import client_context
from agent.tracing import ratio_threshold

# Endpoint kinds served by the agent itself on the main listener.
HEALTH: Final = "health"
LIVE: Final = "live"
READY: Final = "ready"
STARTUP: Final = "startup"
METRICS: Final = "metrics"
PREFLIGHT: Final = "preflight"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ProxyLimits:
    max_body_bytes: int
    max_in_flight: int
    read_timeout_s: float
    header_timeout_s: float
    body_timeout_s: float
    min_body_rate_bytes_s: float
    keepalive_timeout_s: float
    max_head_bytes: int = 64 * 1024
    max_line_bytes: int = 8190
    max_headers: int = 128
    upgrade_idle_timeout_s: float = 3600.0
    max_upgraded: int = 1000


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    url: str
    max_connections: int
    connect_timeout_s: float
    tls: ssl.SSLContext | None = None  # for an https:// app
    server_name: str | None = None  # SNI and the name verified
    # Below the common app-server keep-alive (uvicorn 5 s), so the app never closes a
    # connection the agent is about to reuse.
    idle_timeout_s: float = 4.0


@dataclass(frozen=True, slots=True)
class TracingSettings:
    threshold: str  # agent.tracing.ratio_threshold(sample_ratio)
    trust_incoming: bool
    trace_local: bool


@dataclass(frozen=True, slots=True)
class ProxySettings:
    limits: ProxyLimits
    upstream: UpstreamSettings
    request_id: RequestIdRule
    request_id_name: bytes  # as configured, for the headers the agent writes
    request_id_lower: bytes
    # Request fields never passed on as they came: hop-by-hop, replaced, and the agent's own ids.
    request_skip: frozenset[bytes]
    security: SecurityHeaders
    # What happens to each response field, by lower-case name (HOP, DROP, WATCH below; absent:
    # forwarded), for a plain request and an HTTPS one: one lookup per field.
    response_fields: tuple[dict[bytes, int], dict[bytes, int]]
    cors: Cors
    trusted_networks: tuple[Network, ...]
    local_paths: dict[bytes, str]
    skip_log_paths: frozenset[bytes]
    augment_errors: bool
    public_details: str
    check_types: dict[str, str]
    version: str
    access_log: bool
    access_log_direct: bool
    upgrades: frozenset[bytes]  # Upgrade protocol names tunnelled after a 101, lower-case
    forward_client_cert: bool  # X-Forwarded-Client-Cert to the app (Envoy's format)
    tracing: TracingSettings | None  # None: no spans, traceparent forwarded as it came
    # The heads of the agent's own answers, all but the request id (agent.proxy.response_head.local_head)
    local_heads: dict[tuple[int, bytes | None, int, bytes, bool, bool], tuple[bytes, bytes]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def is_trusted(self, peer: str | None) -> bool:
        if not peer or not self.trusted_networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)


# What agent.proxy.response_head.proxied_head does with a response field, by its lower-case name
# (absent: forwarded as it is).
HOP: Final = 1
DROP: Final = 2
WATCH: Final = 3


def field_actions(dropped: frozenset[bytes], watched: frozenset[bytes]) -> dict[bytes, int]:
    """Hop-by-hop first, then dropped (fingerprints, the app's own ids), then watched (names whose
    presence changes what the agent adds): the first that applies is the action."""
    actions = dict.fromkeys(watched, WATCH)
    actions.update(dict.fromkeys(dropped, DROP))
    actions.update(dict.fromkeys(HOP_BY_HOP, HOP))
    return actions


def proxy_settings(config: AgentConfig) -> ProxySettings:
    request_id = RequestIdRule(config.request_id.header, config.request_id.pattern)
    security = SecurityHeaders.from_config(config.security_headers)
    own = {request_id.header_lower.encode(), b"x-error-id"}  # the app's values never reach the client
    dropped_plain = _encoded(security.dropped(False)) | own
    dropped_https = _encoded(security.dropped(True)) | own
    watched = _encoded(security.watched) | {b"access-control-allow-origin"}
    return ProxySettings(
        limits=_limits(config),
        upstream=_upstream(config),
        request_id=request_id,
        request_id_name=config.request_id.header.encode(),
        request_id_lower=request_id.header_lower.encode(),
        request_skip=HOP_BY_HOP | REQUEST_REPLACED | {request_id.header_lower.encode(), b"traceparent"},
        security=security,
        response_fields=(field_actions(dropped_plain, watched), field_actions(dropped_https, watched)),
        cors=Cors.from_config(config.cors),
        trusted_networks=tuple(ipaddress.ip_network(c, strict=False) for c in config.proxy.trusted_proxies),
        local_paths=_local_paths(config),
        skip_log_paths=frozenset(p.encode() for p in config.logging.skip_paths),
        augment_errors=config.proxy.error_bodies == "augment",
        public_details=config.health.public_details,
        check_types={c.name: c.type for c in config.checks},
        version=__version__,
        access_log=config.logging.access_log,
        # Access lines skip the logging machinery unless a file handler must see them too.
        access_log_direct=not config.logging.file and config.logging.format == "json",
        upgrades=frozenset(p.lower().encode() for p in config.proxy.upgrades),
        forward_client_cert=config.proxy.forward_client_cert,
        tracing=_tracing(config),
    )


def _upstream(config: AgentConfig) -> UpstreamSettings:
    upstream = config.upstream
    https = upstream.url.startswith("https://")
    return UpstreamSettings(
        url=upstream.url,
        max_connections=upstream.max_connections,
        connect_timeout_s=upstream.connect_timeout_s,
        tls=client_context(upstream.tls) if https else None,
        server_name=(upstream.tls.server_name or None) if https else None,
    )


def _tracing(config: AgentConfig) -> TracingSettings | None:
    tracing = config.tracing
    if not tracing.enabled:
        return None
    return TracingSettings(ratio_threshold(tracing.sample_ratio), tracing.trust_incoming_sampling, tracing.trace_local)


def _limits(config: AgentConfig) -> ProxyLimits:
    proxy = config.proxy
    return ProxyLimits(
        max_body_bytes=proxy.max_body_bytes,
        max_in_flight=proxy.max_in_flight,
        read_timeout_s=config.upstream.read_timeout_s,
        header_timeout_s=proxy.header_timeout_s,
        body_timeout_s=proxy.body_timeout_s,
        min_body_rate_bytes_s=proxy.min_body_rate_bytes_s,
        keepalive_timeout_s=proxy.keepalive_timeout_s,
        upgrade_idle_timeout_s=proxy.upgrade_idle_timeout_s,
        max_upgraded=proxy.max_upgraded,
    )


def _local_paths(config: AgentConfig) -> dict[bytes, str]:
    prefix = config.health.path_prefix.encode()
    paths = {prefix: HEALTH, prefix + b"/live": LIVE, prefix + b"/ready": READY, prefix + b"/startup": STARTUP}
    if not config.admin.enabled:
        paths[config.metrics.path.encode()] = METRICS
    return paths


def _encoded(names: frozenset[str]) -> frozenset[bytes]:
    return frozenset(name.encode("latin-1") for name in names)
