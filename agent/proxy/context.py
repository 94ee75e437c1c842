"""Everything the main listener's connections share, computed once from the config.

Header blocks are pre-encoded here so the per-request path only concatenates bytes.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from agent import __version__
from agent.config import AgentConfig
from agent.errors import MESSAGES
from agent.health.monitor import Monitor
from agent.logs import rfc3339
from agent.proxy.access_log import AccessLog
from agent.proxy.upstream import UpstreamPool
from agent.proxy.wire import encode_headers, status_line

# Endpoint kinds served by the agent itself on the main listener.
HEALTH, LIVE, READY, STARTUP = "health", "live", "ready", "startup"


class HttpMetricsHook(Protocol):
    """What the main listener reports per request (``agent.metrics.HttpMetrics``)."""

    def start(self) -> None: ...

    def observe(self, method: str, raw_path: str, status: int, duration_s: float) -> None: ...

    def upstream_error(self, reason: str) -> None: ...


class NoMetrics:
    def start(self) -> None:
        pass

    def observe(self, method: str, raw_path: str, status: int, duration_s: float) -> None:
        pass

    def upstream_error(self, reason: str) -> None:
        pass


@dataclass
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


@dataclass
class ProxyContext:
    config: AgentConfig
    monitor: Monitor
    pool: UpstreamPool
    access_log: AccessLog
    limits: ProxyLimits
    metrics: HttpMetricsHook = field(default_factory=NoMetrics)
    metrics_page: Callable[[bytes], tuple[bytes, bytes]] | None = None  # accept -> (content type, body)
    in_flight: int = 0
    connections: set[Any] = field(default_factory=set)
    closing: bool = False

    def __post_init__(self) -> None:
        config = self.config
        self.request_id_header = config.request_id.header.encode().lower()
        self.request_id_name = config.request_id.header.encode()
        self.request_id_pattern = re.compile(config.request_id.pattern.encode())
        sec = config.security_headers
        self.security_names = frozenset(name.lower().encode() for name, _ in sec.headers)
        self.security_block = encode_headers([(n.encode(), v.encode()) for n, v in sec.headers])
        self.security_pairs = tuple((n.encode(), v.encode()) for n, v in sec.headers)
        self.security_override = sec.override
        self.removed = frozenset(name.lower().encode() for name in sec.remove)
        # Response headers from the app the agent drops, and those whose presence it must know.
        self.dropped_response_headers = self.removed | {self.request_id_header, b"x-error-id"}
        self.watched_response_headers = self.security_names | {b"strict-transport-security", b"access-control-allow-origin"}
        self.hsts_mode = sec.hsts
        self.hsts_line = b"Strict-Transport-Security: %s\r\n" % sec.hsts_value.encode()
        self.trusted_networks = tuple(ipaddress.ip_network(c, strict=False) for c in config.proxy.trusted_proxies)
        prefix = config.health.path_prefix.encode()
        self.local_paths: dict[bytes, str] = {
            prefix: HEALTH,
            prefix + b"/live": LIVE,
            prefix + b"/ready": READY,
            prefix + b"/startup": STARTUP,
        }
        self.metrics_path = config.metrics.path.encode() if not config.admin.enabled else None
        self.skip_log_paths = frozenset(p.encode() for p in config.logging.skip_paths)
        self.augment_errors = config.proxy.error_bodies == "augment"
        self.public_details = config.health.public_details
        self.version = __version__
        self.check_types = {c.name: c.type for c in config.checks}
        port = self.pool.port
        self.upstream_authority = self.pool.host.encode() + (b":%d" % port if port not in (0, 80) else b"")
        cors = config.cors
        self.cors_enabled = bool(cors.allowed_origins)
        self.cors_any = "*" in cors.allowed_origins
        self.cors_origins = frozenset(o.encode() for o in cors.allowed_origins)
        credentials = b"Access-Control-Allow-Credentials: true\r\n" if cors.allow_credentials else b""
        self.cors_common = credentials + (
            b"Access-Control-Expose-Headers: %s\r\n" % ", ".join(cors.expose_headers).encode() if cors.expose_headers else b""
        )
        self.cors_preflight = (
            b"Access-Control-Allow-Methods: %s\r\nAccess-Control-Allow-Headers: %s\r\nAccess-Control-Max-Age: %d\r\n"
            % (
                ", ".join(cors.allowed_methods).encode(),
                ", ".join(cors.allowed_headers).encode(),
                cors.max_age_s,
            )
            + credentials
        )

    def cors_lines(self, origin: bytes | None) -> bytes:
        """CORS response headers for a request from ``origin``; empty when it is not allowed."""
        if origin is None or not (self.cors_any or origin in self.cors_origins):
            return b""
        # "*" is never combined with credentials (a config error); echo the origin otherwise.
        allow = b"*" if self.cors_any and not self.config.cors.allow_credentials else origin
        return b"Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n%s" % (allow, self.cors_common)

    @property
    def draining(self) -> bool:
        return self.monitor.draining

    def is_trusted(self, peer: str | None) -> bool:
        if not peer or not self.trusted_networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)

    def security_lines(self, present: set[bytes] | None, https: bool) -> bytes:
        """Security headers for a response whose own header names (lower-case) are ``present``."""
        if present is None or self.security_override or not (present & self.security_names):
            block = self.security_block
        else:
            block = encode_headers([(n, v) for n, v in self.security_pairs if n.lower() not in present])
        wants_hsts = self.hsts_mode == "always" or (self.hsts_mode == "https" and https)
        if wants_hsts and (present is None or self.security_override or b"strict-transport-security" not in present):
            block += self.hsts_line
        return block

    def local_response(
        self,
        status: int,
        body: bytes,
        *,
        request_id: str,
        content_type: bytes = b"application/json",
        extra: bytes = b"",
        close: bool = False,
        head_only: bool = False,
        https: bool = False,
    ) -> bytes:
        """A complete response the agent itself sends (health, errors), with every header it owes."""
        head = b"%sContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n%s: %s\r\n%s%s%s\r\n" % (
            status_line(status),
            content_type,
            len(body),
            self.request_id_name,
            request_id.encode(),
            extra,
            self.security_lines(None, https),
            b"Connection: close\r\n" if close else b"",
        )
        return head if head_only else head + body

    def error_response(
        self,
        status: int,
        error_code: str,
        *,
        request_id: str,
        message: str | None = None,
        close: bool = False,
        extra: bytes = b"",
        head_only: bool = False,
        https: bool = False,
    ) -> tuple[bytes, str]:
        """The JSON error body of SPEC §5 as a complete response, and its ``error_id``."""
        error_id, body = error_body(error_code, message, request_id)
        extra = b"X-Error-ID: %s\r\n%s" % (error_id.encode(), extra)
        response = self.local_response(
            status, body, request_id=request_id, extra=extra, close=close, head_only=head_only, https=https
        )
        return response, error_id


def error_body(error_code: str, message: str | None, request_id: str | None) -> tuple[str, bytes]:
    from agent.proxy.wire import new_ids

    error_id = new_ids()[0]
    body = orjson.dumps(
        {
            "error_id": error_id,
            "error_code": error_code,
            "message": message or MESSAGES.get(error_code, error_code),
            "timestamp": rfc3339(time.time()),
            "request_id": request_id,
        }
    )
    return error_id, body
