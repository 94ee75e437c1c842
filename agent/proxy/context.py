"""Everything the main listener's connections share: settings, the monitor's state, the pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.metrics.http import HttpMetrics
from agent.proxy.access_log import AccessLog
from agent.proxy.local import HealthState, MetricsPage
from agent.proxy.settings import ProxySettings
from agent.proxy.upstream import UpstreamPool
from agent.tracing import Tracer


class NoMetrics(HttpMetrics):
    """:class:`~agent.metrics.http.HttpMetrics` that counts nothing (a listener built without a registry).

    A subclass rather than a protocol, so the compiled request path calls the metrics natively.
    """

    def __init__(self) -> None:  # no registry, no series
        pass

    def start(self) -> None:
        pass

    def observe(
        self, method: str, raw_path: str, status: int, duration_s: float, exemplar: tuple[str, str] | None = None
    ) -> None:
        pass

    def route(self, raw_path: str) -> str:
        return raw_path[:256]

    def upstream_error(self, reason: str) -> None:
        pass

    def upgraded(self, status: int) -> None:
        pass

    def tunnel_opened(self) -> None:
        pass

    def tunnel_closed(self) -> None:
        pass

    def tunnel_bytes(self, direction: str, n: int) -> None:
        pass


@dataclass
class ProxyContext:
    settings: ProxySettings
    state: HealthState
    pool: UpstreamPool
    access_log: AccessLog
    metrics: HttpMetrics = field(default_factory=NoMetrics)
    metrics_page: MetricsPage | None = None
    tracer: Tracer | None = None  # set when tracing.enabled
    in_flight: int = 0
    connections: set[Any] = field(default_factory=set)
    tunnels: set[Any] = field(default_factory=set)  # agent.proxy.tunnel.Tunnel, open after a 101
    closing: bool = False

    def __post_init__(self) -> None:
        self.limits = self.settings.limits
        port = self.pool.port
        default_port = 443 if self.pool.tls is not None else 80
        self.upstream_authority = self.pool.host.encode() + (b":%d" % port if port not in (0, default_port) else b"")

    @property
    def draining(self) -> bool:
        return self.state.draining
