"""The configuration's shape: frozen, slotted section dataclasses, the check settings and AgentConfig.

Fields made with ``opt`` are file keys (with their default, validator and doc line); fields
without that metadata are derived by the loader and never read from a file. A file key whose
type is a section dataclass (``tls``) is a nested table: ``[server.tls]``, ``[checks.NAME.tls]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_type_hints

from agent.config.fields import listen_address, non_negative, one_of, opt, positive, ratio, tcp_port
from agent.config.headers import DEFAULT_REMOVED_HEADERS, DEFAULT_SECURITY_HEADERS
from agent.secrets import Secret

ConfigTable = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListenerTlsConfig:
    """``[server.tls]`` / ``[admin.tls]``: absent or ``cert_file = ""`` means plain HTTP."""

    cert_file: str = opt("", doc="PEM chain, leaf first; empty = plain HTTP")
    key_file: str = opt("", doc="PEM private key of cert_file")
    client_ca_file: str = opt("", doc="set -> client certificates are verified against it")
    client_auth: str = opt(
        "", check=one_of("", "require", "optional"), doc='"require" (the default once client_ca_file is set) | "optional"'
    )
    min_version: str = opt("TLSv1.2", check=one_of("TLSv1.2", "TLSv1.3"))
    reload_interval_s: float = opt(10.0, check=positive, doc="how often the files are checked for a change")

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    @property
    def client_verification(self) -> str:
        """``"require"``, ``"optional"`` or ``""`` (no client certificates asked for)."""
        if not self.client_ca_file:
            return ""
        return self.client_auth or "require"


@dataclass(frozen=True, slots=True)
class ClientTlsConfig:
    """``[upstream.tls]`` / ``[checks.NAME.tls]``: used for ``https://`` URLs."""

    ca_file: str = opt("", doc="empty -> the system trust store")
    server_name: str = opt("", doc="SNI and the name verified; empty -> the URL's host")
    cert_file: str = opt("", doc="client certificate (mTLS), optional")
    key_file: str = opt("", doc="its private key")
    verify: bool = opt(True, doc="false only with a loud warning at start")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = opt("0.0.0.0:8000", check=listen_address, doc="main listener (proxy + health)")
    drain_delay_s: float = opt(5.0, check=non_negative, doc="after SIGTERM, keep serving this long with readiness 503")
    shutdown_timeout_s: float = opt(25.0, check=positive, doc="then wait this long for in-flight requests")
    tls: ListenerTlsConfig = opt(ListenerTlsConfig(), doc="[server.tls]: HTTPS on the main listener")


@dataclass(frozen=True, slots=True)
class AdminConfig:
    enabled: bool = opt(True, doc="serve /metrics, detailed health and /status on a separate listener")
    listen: str = opt("0.0.0.0:9464", check=listen_address)
    token: Secret = opt(Secret(""), doc="bearer token for details, /status and /admin/*; empty = none")
    token_env: str = opt("", doc="name of an environment variable holding the token")
    tls: ListenerTlsConfig = opt(ListenerTlsConfig(), doc="[admin.tls]: HTTPS on the admin listener")


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str = opt("http://127.0.0.1:8080", doc='the app: "http://host:port", "https://host:port" or "unix:/path.sock"')
    connect_timeout_s: float = opt(2.0, check=positive)
    read_timeout_s: float = opt(30.0, check=positive)
    max_connections: int = opt(100, check=positive)
    tls: ClientTlsConfig = opt(ClientTlsConfig(), doc="[upstream.tls]: for an https:// url")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    max_body_bytes: int = opt(10 * 1024 * 1024, check=non_negative)
    max_in_flight: int = opt(1000, check=positive)
    trusted_proxies: tuple[str, ...] = opt((), doc="CIDRs whose X-Forwarded-* headers are trusted")
    error_bodies: str = opt("augment", check=one_of("augment", "passthrough"))
    header_timeout_s: float = opt(10.0, check=positive, doc="a request head must arrive within this")
    body_timeout_s: float = opt(30.0, check=positive, doc="a request body may stall at most this long")
    min_body_rate_bytes_s: float = opt(1024.0, check=non_negative, doc="after body_timeout_s, slower bodies are cut off")
    keepalive_timeout_s: float = opt(75.0, check=positive, doc="idle client connections close after this")
    upgrades: tuple[str, ...] = opt(("websocket",), doc="Upgrade protocols tunnelled after a 101; others lose Upgrade")
    upgrade_idle_timeout_s: float = opt(3600.0, check=positive, doc="a tunnel idle both ways this long is closed")
    max_upgraded: int = opt(1000, check=positive, doc="open tunnels at most; more upgrades get 503 OVERLOADED")
    forward_client_cert: bool = opt(False, doc="send the verified client certificate to the app as X-Forwarded-Client-Cert")


@dataclass(frozen=True, slots=True)
class RequestIdConfig:
    header: str = opt("X-Request-ID")
    pattern: str = opt(r"^[A-Za-z0-9._:+=/@-]{1,128}$", doc="incoming IDs not matching this are replaced")


@dataclass(frozen=True, slots=True)
class SecurityHeadersConfig:
    override: bool = opt(False, doc="replace values the upstream already set")
    hsts: str = opt("https", check=one_of("https", "always", "off"))
    hsts_value: str = opt("max-age=63072000; includeSubDomains")
    remove: tuple[str, ...] = opt(DEFAULT_REMOVED_HEADERS, doc="response headers removed (fingerprinting)")
    # Any other key in [security_headers] is a header name: a value replaces the default, "" removes it.
    headers: tuple[tuple[str, str], ...] = DEFAULT_SECURITY_HEADERS


@dataclass(frozen=True, slots=True)
class CorsConfig:
    allowed_origins: tuple[str, ...] = opt((), doc='origins allowed, or ["*"]; empty = CORS off')
    allow_credentials: bool = opt(False)
    allowed_methods: tuple[str, ...] = opt(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"))
    allowed_headers: tuple[str, ...] = opt(("Authorization", "Content-Type", "X-Request-ID"))
    expose_headers: tuple[str, ...] = opt(("X-Request-ID", "X-Error-ID"))
    max_age_s: int = opt(600, check=non_negative)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    path_prefix: str = opt("/health")
    public_details: str = opt("status", check=one_of("none", "status", "full"))
    max_loop_lag_s: float = opt(1.0, check=positive)
    interval_s: float = opt(5.0, check=positive, doc="default for every check")
    timeout_s: float = opt(2.0, check=positive, doc="default for every check")
    failure_threshold: int = opt(2, check=positive, doc="default for every check")
    success_threshold: int = opt(1, check=positive, doc="default for every check")
    history_size: int = opt(120, check=positive, doc="runs kept per check for /health/history and /status")


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    dsn: Secret = opt(Secret(""), doc='"postgresql://user:pass@host:5432/db" (SQLAlchemy schemes accepted)')
    dsn_env: str = opt("DATABASE_URL", doc="environment variable holding the DSN when dsn is empty")
    expect_primary: bool = opt(True, doc="fail when the server is in recovery (a standby)")
    warn_latency_ms: float = opt(500.0, check=positive)
    warn_connections_ratio: float = opt(0.9, check=ratio)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    url: str = opt("", doc="full URL; default: upstream.url + path")
    path: str = opt("/health")
    expect_status: str = opt("200-399", doc='"200-399", "200,204" ...')
    unix_socket: str = ""  # derived: set when the upstream listens on a unix socket
    tls: ClientTlsConfig = opt(ClientTlsConfig(), doc="[checks.NAME.tls]; without url: upstream.tls, keys set here win")


@dataclass(frozen=True, slots=True)
class TcpSettings:
    host: str = opt("127.0.0.1")
    port: int = opt(0, check=tcp_port)


@dataclass(frozen=True, slots=True)
class DiskSettings:
    path: str = opt("/")
    warn_free_ratio: float = opt(0.10, check=ratio)
    fail_free_ratio: float = opt(0.02, check=ratio)


@dataclass(frozen=True, slots=True)
class MemorySettings:
    warn_used_ratio: float = opt(0.90, check=ratio)
    fail_used_ratio: float = opt(0.98, check=ratio)


CheckSettings = PostgresSettings | HttpSettings | TcpSettings | DiskSettings | MemorySettings
CHECK_TYPES: dict[str, type[Any]] = {
    "postgres": PostgresSettings,
    "http": HttpSettings,
    "tcp": TcpSettings,
    "disk": DiskSettings,
    "memory": MemorySettings,
}


@dataclass(frozen=True, slots=True)
class CommonCheckKeys:
    """Keys every ``[checks.NAME]`` table accepts; unset timing keys inherit from [health]."""

    type: str = opt("", check=one_of(*CHECK_TYPES), doc=" | ".join(CHECK_TYPES))
    enabled: bool = opt(True)
    critical: bool = opt(True, doc="a failing non-critical check only makes /health warn")
    interval_s: float = opt(0.0, check=non_negative, doc="0 = health.interval_s")
    timeout_s: float = opt(0.0, check=non_negative, doc="0 = health.timeout_s")
    failure_threshold: int = opt(0, check=non_negative, doc="0 = health.failure_threshold")
    success_threshold: int = opt(0, check=non_negative, doc="0 = health.success_threshold")


@dataclass(frozen=True, slots=True)
class CheckConfig:
    name: str
    type: str
    critical: bool
    interval_s: float
    timeout_s: float
    failure_threshold: int
    success_threshold: int
    settings: CheckSettings


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    path: str = opt("/metrics")
    routes: tuple[str, ...] = opt((), doc='route templates, e.g. ["/api/v1/plans/{id}"]')
    max_routes: int = opt(200, check=positive)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = opt("INFO", check=one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    format: str = opt("json", check=one_of("json", "text"))
    file: str = opt("", doc="also write to this rotating file")
    file_max_bytes: int = opt(10 * 1024 * 1024, check=positive)
    file_backups: int = opt(3, check=non_negative)
    access_log: bool = opt(True, doc="one line per proxied request")
    skip_paths: tuple[str, ...] = opt(("/health/live", "/health/ready", "/health/startup", "/metrics"))


# A table of header names to values that may be secrets (``tracing.headers``).
HeaderTable = tuple[tuple[str, Secret], ...]


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """``[tracing]``: a span per proxied request, exported over OTLP/HTTP (the ``otlp`` extra)."""

    enabled: bool = opt(False, doc="needs pip install 'sidecar-agent[otlp]'")
    endpoint: str = opt("http://127.0.0.1:4318/v1/traces", doc="OTLP/HTTP protobuf; also OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    headers: HeaderTable = opt((), doc="sent with every export (an API key, say); masked in check-config")
    sample_ratio: float = opt(0.01, check=ratio, doc="for requests that arrive without a sampled parent")
    trust_incoming_sampling: bool = opt(True, doc="false at an edge: the client's sampled flag is ignored")
    service_name: str = opt("sidecar-agent", doc="plus OTEL_RESOURCE_ATTRIBUTES, k8s pod/namespace from env")
    max_queue: int = opt(2048, check=positive, doc="spans waiting for export; more are dropped and counted")
    trace_local: bool = opt(False, doc="also trace probes, metrics and the agent's own local answers")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    request_id: RequestIdConfig = field(default_factory=RequestIdConfig)
    security_headers: SecurityHeadersConfig = field(default_factory=SecurityHeadersConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    checks: tuple[CheckConfig, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    # (name, type) of every [checks.NAME] table with enabled = false, so the printed config says so.
    disabled_checks: tuple[tuple[str, str], ...] = ()
    source: str = "defaults"
    # Keys of the file itself that hold a secret (agent.config.exposure); where a value came from
    # is no part of what the config is, so it takes no part in equality.
    secret_keys_in_file: tuple[str, ...] = field(default=(), compare=False)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for the redactor; never printed."""
        values = [self.admin.token.reveal(), *(value.reveal() for _, value in self.tracing.headers)]
        for check in self.checks:
            if isinstance(check.settings, PostgresSettings):
                values.extend(check.settings.dsn.secret_parts())
        return tuple(v for v in values if v)


# The [section] tables: every AgentConfig field that is not the checks or what the loader records.
SECTIONS: dict[str, type[Any]] = {
    name: hint
    for name, hint in get_type_hints(AgentConfig).items()
    if name not in ("checks", "disabled_checks", "source", "secret_keys_in_file")
}

DEFAULT_CHECKS: dict[str, ConfigTable] = {
    "database": {"type": "postgres", "critical": True},
    "upstream": {"type": "http", "critical": True},
    "disk": {"type": "disk", "critical": False},
}
