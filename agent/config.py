"""Configuration: one TOML file plus ``AGENT_*`` environment overrides, validated once, frozen.

``load_config(path, environ)`` is the only function that reads files or the environment. Every
error is a :class:`ConfigError` whose message starts with the full key (``upstream.read_timeout_s:
must be > 0, got -1``); the CLI turns it into exit code 2 before any port is bound.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin, get_type_hints
from urllib.parse import urlsplit

from agent.secrets import Secret

ConfigTable = dict[str, Any]


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line naming the full key."""

    def __init__(self, key: str, problem: str) -> None:
        # Keys and values can hold any character (quoted TOML keys): one line, always.
        key, problem = _one_line(key), _one_line(problem)
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


# --- field helpers ---------------------------------------------------------------------------

Validator = Callable[[Any], str | None]


def _opt(default: Any, *, check: Validator | None = None, doc: str = "") -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for defaults")
    return field(default=default, metadata={"check": check, "doc": doc})


def positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value!r}"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value!r}"


def ratio(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be between 0 and 1, got {value!r}"


def one_of(*choices: str) -> Validator:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}, got {value!r}"

    return check


def listen_address(value: Any) -> str | None:
    try:
        parse_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8000"`` / ``"[::]:8000"`` / ``":8000"`` -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"must be HOST:PORT, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535, got {port}")
    host = host.strip("[]") or "0.0.0.0"
    return host, port


# --- sections --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = _opt("0.0.0.0:8000", check=listen_address, doc="main listener (proxy + health)")
    drain_delay_s: float = _opt(5.0, check=non_negative, doc="after SIGTERM, keep serving this long with readiness 503")
    shutdown_timeout_s: float = _opt(25.0, check=positive, doc="then wait this long for in-flight requests")


@dataclass(frozen=True, slots=True)
class AdminConfig:
    enabled: bool = _opt(True, doc="serve /metrics, detailed health and /status on a separate listener")
    listen: str = _opt("0.0.0.0:9464", check=listen_address)
    token: Secret = _opt(Secret(""), doc="bearer token for details, /status and /admin/*; empty = none")
    token_env: str = _opt("", doc="name of an environment variable holding the token")


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str = _opt("http://127.0.0.1:8080", doc='the app: "http://host:port" or "unix:/path.sock"')
    connect_timeout_s: float = _opt(2.0, check=positive)
    read_timeout_s: float = _opt(30.0, check=positive)
    max_connections: int = _opt(100, check=positive)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    max_body_bytes: int = _opt(10 * 1024 * 1024, check=non_negative)
    max_in_flight: int = _opt(1000, check=positive)
    trusted_proxies: tuple[str, ...] = _opt((), doc="CIDRs whose X-Forwarded-* headers are trusted")
    error_bodies: str = _opt("augment", check=one_of("augment", "passthrough"))
    header_timeout_s: float = _opt(10.0, check=positive, doc="a request head must arrive within this")
    body_timeout_s: float = _opt(30.0, check=positive, doc="a request body may stall at most this long")
    min_body_rate_bytes_s: float = _opt(1024.0, check=non_negative, doc="after body_timeout_s, slower bodies are cut off")
    keepalive_timeout_s: float = _opt(75.0, check=positive, doc="idle client connections close after this")


@dataclass(frozen=True, slots=True)
class RequestIdConfig:
    header: str = _opt("X-Request-ID")
    pattern: str = _opt(r"^[A-Za-z0-9._:+=/@-]{1,128}$", doc="incoming IDs not matching this are replaced")


DEFAULT_SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    # OWASP Secure Headers Project ci/headers_add.json, last_update_utc 2026-07-19, minus
    # Clear-Site-Data (meant for logout responses), Cross-Origin-Embedder-Policy (breaks
    # embedding), Cache-Control (an API's caching is its own business) and HSTS (added only
    # for HTTPS, see hsts). X-XSS-Protection: 0 per OWASP (the auditor it enabled is gone).
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    (
        "Content-Security-Policy",
        "default-src 'self'; form-action 'self'; base-uri 'self'; object-src 'none'; "
        "frame-ancestors 'none'; upgrade-insecure-requests",
    ),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    (
        "Permissions-Policy",
        "accelerometer=(), autoplay=(), camera=(), cross-origin-isolated=(), display-capture=(), "
        "encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), keyboard-map=(), "
        "magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), "
        "publickey-credentials-get=(), screen-wake-lock=(), sync-xhr=(self), usb=(), web-share=(), "
        "xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), gamepad=(), hid=(), "
        "idle-detection=(), interest-cohort=(), serial=(), unload=()",
    ),
    ("X-Permitted-Cross-Domain-Policies", "none"),
    ("X-DNS-Prefetch-Control", "off"),
    ("X-XSS-Protection", "0"),
)

DEFAULT_REMOVED_HEADERS: tuple[str, ...] = (
    # The fingerprinting subset of OWASP's ci/headers_remove.json that a Python/Kubernetes
    # stack emits (same version as above).
    "Server",
    "X-Powered-By",
    "Powered-By",
    "X-Generator",
    "X-Framework",
    "X-Redirect-By",
    "X-AspNet-Version",
    "X-AspNetMvc-Version",
    "X-Php-Version",
    "X-Runtime",
    "X-Version",
    "X-Envoy-Upstream-Service-Time",
    "X-Envoy-Attempt-Count",
    "X-Envoy-External-Address",
    "X-Envoy-Internal",
    "X-Envoy-Original-Dst-Host",
    "X-B3-TraceId",
    "X-B3-SpanId",
    "X-B3-ParentSpanId",
    "X-B3-Sampled",
    "X-Datadog-Trace-Id",
    "X-Datadog-Parent-Id",
    "X-Datadog-Sampling-Priority",
    "X-Datadog-Tags",
    "X-Datadog-Origin",
    "X-Kong-Proxy-Latency",
    "X-Kong-Upstream-Latency",
    "X-Kong-Request-Id",
    "X-Kong-Upstream-Status",
    "X-Kubernetes-PF-FlowSchema-UID",
    "X-Kubernetes-PF-PriorityLevel-UID",
    "X-Tyk-Trace-Id",
    "SourceMap",
    "X-SourceMap",
)


@dataclass(frozen=True, slots=True)
class SecurityHeadersConfig:
    override: bool = _opt(False, doc="replace values the upstream already set")
    hsts: str = _opt("https", check=one_of("https", "always", "off"))
    hsts_value: str = _opt("max-age=63072000; includeSubDomains")
    remove: tuple[str, ...] = _opt(DEFAULT_REMOVED_HEADERS, doc="response headers removed (fingerprinting)")
    # Any other key in [security_headers] is a header name: a value replaces the default, "" removes it.
    headers: tuple[tuple[str, str], ...] = DEFAULT_SECURITY_HEADERS


@dataclass(frozen=True, slots=True)
class CorsConfig:
    allowed_origins: tuple[str, ...] = _opt((), doc='origins allowed, or ["*"]; empty = CORS off')
    allow_credentials: bool = _opt(False)
    allowed_methods: tuple[str, ...] = _opt(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"))
    allowed_headers: tuple[str, ...] = _opt(("Authorization", "Content-Type", "X-Request-ID"))
    expose_headers: tuple[str, ...] = _opt(("X-Request-ID", "X-Error-ID"))
    max_age_s: int = _opt(600, check=non_negative)


@dataclass(frozen=True, slots=True)
class HealthConfig:
    path_prefix: str = _opt("/health")
    public_details: str = _opt("status", check=one_of("none", "status", "full"))
    max_loop_lag_s: float = _opt(1.0, check=positive)
    interval_s: float = _opt(5.0, check=positive, doc="default for every check")
    timeout_s: float = _opt(2.0, check=positive, doc="default for every check")
    failure_threshold: int = _opt(2, check=positive, doc="default for every check")
    success_threshold: int = _opt(1, check=positive, doc="default for every check")
    history_size: int = _opt(120, check=positive, doc="runs kept per check for /health/history and /status")


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    dsn: Secret = _opt(Secret(""), doc='"postgresql://user:pass@host:5432/db" (SQLAlchemy schemes accepted)')
    dsn_env: str = _opt("DATABASE_URL", doc="environment variable holding the DSN when dsn is empty")
    expect_primary: bool = _opt(True, doc="fail when the server is in recovery (a standby)")
    warn_latency_ms: float = _opt(500.0, check=positive)
    warn_connections_ratio: float = _opt(0.9, check=ratio)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    url: str = _opt("", doc="full URL; default: upstream.url + path")
    path: str = _opt("/health")
    expect_status: str = _opt("200-399", doc='"200-399", "200,204" ...')
    unix_socket: str = ""  # derived: set when the upstream listens on a unix socket


@dataclass(frozen=True, slots=True)
class TcpSettings:
    host: str = _opt("127.0.0.1")
    port: int = _opt(0, check=lambda v: None if 0 < v < 65536 else f"must be 1-65535, got {v!r}")


@dataclass(frozen=True, slots=True)
class DiskSettings:
    path: str = _opt("/")
    warn_free_ratio: float = _opt(0.10, check=ratio)
    fail_free_ratio: float = _opt(0.02, check=ratio)


@dataclass(frozen=True, slots=True)
class MemorySettings:
    warn_used_ratio: float = _opt(0.90, check=ratio)
    fail_used_ratio: float = _opt(0.98, check=ratio)


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

    type: str = _opt("", check=one_of(*CHECK_TYPES), doc=" | ".join(CHECK_TYPES))
    enabled: bool = _opt(True)
    critical: bool = _opt(True, doc="a failing non-critical check only makes /health warn")
    interval_s: float = _opt(0.0, check=non_negative, doc="0 = health.interval_s")
    timeout_s: float = _opt(0.0, check=non_negative, doc="0 = health.timeout_s")
    failure_threshold: int = _opt(0, check=non_negative, doc="0 = health.failure_threshold")
    success_threshold: int = _opt(0, check=non_negative, doc="0 = health.success_threshold")


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
    path: str = _opt("/metrics")
    routes: tuple[str, ...] = _opt((), doc='route templates, e.g. ["/api/v1/plans/{id}"]')
    max_routes: int = _opt(200, check=positive)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = _opt("INFO", check=one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    format: str = _opt("json", check=one_of("json", "text"))
    file: str = _opt("", doc="also write to this rotating file")
    file_max_bytes: int = _opt(10 * 1024 * 1024, check=positive)
    file_backups: int = _opt(3, check=non_negative)
    access_log: bool = _opt(True, doc="one line per proxied request")
    skip_paths: tuple[str, ...] = _opt(("/health/live", "/health/ready", "/health/startup", "/metrics"))


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
    source: str = "defaults"

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for the redactor; never printed."""
        values = [self.admin.token.reveal()]
        for check in self.checks:
            if isinstance(check.settings, PostgresSettings):
                values.extend(check.settings.dsn.secret_parts())
        return tuple(v for v in values if v)


SECTIONS: dict[str, type[Any]] = {
    name: hint for name, hint in get_type_hints(AgentConfig).items() if name not in ("checks", "source")
}

DEFAULT_CHECKS: dict[str, ConfigTable] = {
    "database": {"type": "postgres", "critical": True},
    "upstream": {"type": "http", "critical": True},
    "disk": {"type": "disk", "critical": False},
}


# --- loading ---------------------------------------------------------------------------------


def load_config(path: str | Path | None, environ: Mapping[str, str]) -> AgentConfig:
    """Build the effective configuration from an optional TOML file and the environment.

    ``path`` None means: ``$AGENT_CONFIG``, else ``./agent.toml`` if present, else defaults.
    Environment variables ``AGENT_<SECTION>_<KEY>`` win over the file.
    """
    source = "defaults"
    table: ConfigTable = {}
    if path is None and environ.get("AGENT_CONFIG"):
        path = environ["AGENT_CONFIG"]
    if path is None and Path("agent.toml").is_file():
        path = "agent.toml"
    if path is not None:
        table = _read_toml(Path(path))
        source = str(path)
    for key, value, origin in _env_overrides(environ):
        _set_path(table, key, value, origin)
    return build_config(table, environ, source)


def _read_toml(path: Path) -> ConfigTable:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("config", f"{str(path)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"invalid TOML in {str(path)!r}: {exc}") from None


def build_config(table: ConfigTable, environ: Mapping[str, str], source: str) -> AgentConfig:
    """Validate an already-parsed table (what a TOML file holds) into the frozen config."""
    unknown = set(table) - set(SECTIONS) - {"checks"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(key, f"unknown section or key (known: {', '.join(sorted([*SECTIONS, 'checks']))})")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        raw = table.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(name, f"must be a table, got {_type_name(raw)}")
        if cls is SecurityHeadersConfig:
            sections[name] = _build_security_headers(raw)
        else:
            sections[name] = _build_section(cls, raw, name)
    admin: AdminConfig = sections["admin"]
    if not admin.token.reveal() and admin.token_env:
        sections["admin"] = dataclasses.replace(admin, token=Secret(environ.get(admin.token_env, "")))
    _validate_cross_section(sections)
    checks = _build_checks(table.get("checks", {}), sections["health"], sections["upstream"], environ)
    return AgentConfig(**sections, checks=checks, source=source)


def _build_section(cls: type[Any], raw: Mapping[str, Any], prefix: str, *, extra_ok: bool = False) -> Any:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    names = {f.name: f for f in dataclasses.fields(cls) if f.metadata}
    for key, value in raw.items():
        full = f"{prefix}.{key}"
        if key not in names:
            if extra_ok:
                continue
            raise ConfigError(full, f"unknown key (known: {', '.join(sorted(names))})")
        converted = _convert(hints[key], value, full)
        problem = names[key].metadata["check"](converted) if names[key].metadata["check"] else None
        if problem:
            raise ConfigError(full, problem)
        values[key] = converted
    return cls(**values)


def _build_security_headers(raw: Mapping[str, Any]) -> SecurityHeadersConfig:
    base: SecurityHeadersConfig = _build_section(SecurityHeadersConfig, raw, "security_headers", extra_ok=True)
    known = {f.name for f in dataclasses.fields(SecurityHeadersConfig) if f.metadata}
    headers = {name.lower(): (name, value) for name, value in DEFAULT_SECURITY_HEADERS}
    for key, value in raw.items():
        if key in known:
            continue
        full = f"security_headers.{key}"
        if not _HEADER_NAME.fullmatch(key) or key == "headers":
            raise ConfigError(full, "unknown key, and not a valid header name")
        if not isinstance(value, str) or _CTL.search(value):
            raise ConfigError(full, "must be a header value string without control characters")
        if value == "":
            headers.pop(key.lower(), None)
        else:
            headers[key.lower()] = (key, value)
    return dataclasses.replace(base, headers=tuple(headers.values()))


def _validate_cross_section(sections: Mapping[str, Any]) -> None:
    cors: CorsConfig = sections["cors"]
    if "*" in cors.allowed_origins and cors.allow_credentials:
        raise ConfigError("cors.allow_credentials", 'cannot be true when allowed_origins contains "*"')
    for i, cidr in enumerate(sections["proxy"].trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"proxy.trusted_proxies[{i}]", f"not a CIDR: {cidr!r}") from None
    rid: RequestIdConfig = sections["request_id"]
    try:
        re.compile(rid.pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise ConfigError("request_id.pattern", f"invalid regular expression: {type(exc).__name__}: {exc}") from None
    if not _HEADER_NAME.fullmatch(rid.header):
        raise ConfigError("request_id.header", f"not a valid header name: {rid.header!r}")
    url = sections["upstream"].url
    if not (_is_http_url(url) or url.startswith("unix:/")):
        raise ConfigError("upstream.url", f'must be "http://host:port" or "unix:/path", got {url!r}')
    for i, template in enumerate(sections["metrics"].routes):
        if not template.startswith("/") or any(c in template for c in " ?#"):
            raise ConfigError(f"metrics.routes[{i}]", f'must be a path template like "/api/v1/plans/{{id}}", got {template!r}')
    prefix = sections["health"].path_prefix
    if not prefix.startswith("/") or prefix.endswith("/") or " " in prefix:
        raise ConfigError("health.path_prefix", f'must start with "/" and not end with one, got {prefix!r}')
    logging_cfg: LoggingConfig = sections["logging"]
    if logging_cfg.file:
        _validate_log_file(Path(logging_cfg.file))
    server: ServerConfig = sections["server"]
    admin: AdminConfig = sections["admin"]
    if admin.enabled and parse_listen(admin.listen)[1] == parse_listen(server.listen)[1] != 0:
        raise ConfigError("admin.listen", "must use a different port than server.listen")


def _validate_log_file(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigError("logging.file", f"directory does not exist: {str(path.parent)!r}")
    if path.is_dir():
        raise ConfigError("logging.file", f"is a directory: {str(path)!r}")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise ConfigError("logging.file", f"not writable: {str(path)!r}")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _build_checks(
    raw_checks: Any, health: HealthConfig, upstream: UpstreamConfig, environ: Mapping[str, str]
) -> tuple[CheckConfig, ...]:
    if not isinstance(raw_checks, dict):
        raise ConfigError("checks", f"must be a table of [checks.NAME] tables, got {_type_name(raw_checks)}")
    merged: dict[str, ConfigTable] = {name: dict(t) for name, t in DEFAULT_CHECKS.items()}
    for name, raw in raw_checks.items():
        if not isinstance(raw, dict):
            raise ConfigError(f"checks.{name}", f"must be a table, got {_type_name(raw)}")
        if not _CHECK_NAME.fullmatch(name):
            raise ConfigError(f"checks.{name}", "check names use a-z, 0-9, _ and - (max 63)")
        base = merged.get(name, {})
        if "type" in raw and base.get("type") not in (None, raw["type"]):
            base = {}  # a default name reused for another type starts from scratch
        merged[name] = {**base, **raw}
    checks = []
    for name, raw in merged.items():
        prefix = f"checks.{name}"
        if "type" not in raw:
            raise ConfigError(f"{prefix}.type", f"is required ({' | '.join(CHECK_TYPES)})")
        common_raw = {k: v for k, v in raw.items() if k in _COMMON_KEYS}
        common: CommonCheckKeys = _build_section(CommonCheckKeys, common_raw, prefix)
        settings_cls = CHECK_TYPES[common.type]
        settings = _build_section(settings_cls, {k: v for k, v in raw.items() if k not in _COMMON_KEYS}, prefix)
        if not common.enabled:
            continue
        if isinstance(settings, PostgresSettings):
            settings = _resolve_dsn(settings, prefix, environ, explicit=name in raw_checks)
            if settings is None:
                continue
        if isinstance(settings, HttpSettings):
            settings = _resolve_http(settings, prefix, upstream)
        if isinstance(settings, DiskSettings) and settings.fail_free_ratio > settings.warn_free_ratio:
            raise ConfigError(f"{prefix}.fail_free_ratio", "must be <= warn_free_ratio")
        if isinstance(settings, MemorySettings) and settings.fail_used_ratio < settings.warn_used_ratio:
            raise ConfigError(f"{prefix}.fail_used_ratio", "must be >= warn_used_ratio")
        if isinstance(settings, TcpSettings) and settings.port == 0:
            raise ConfigError(f"{prefix}.port", "is required for a tcp check")
        checks.append(
            CheckConfig(
                name=name,
                type=common.type,
                critical=common.critical,
                interval_s=common.interval_s or health.interval_s,
                timeout_s=common.timeout_s or health.timeout_s,
                failure_threshold=common.failure_threshold or health.failure_threshold,
                success_threshold=common.success_threshold or health.success_threshold,
                settings=settings,
            )
        )
    return tuple(checks)


def _resolve_dsn(
    settings: PostgresSettings, prefix: str, environ: Mapping[str, str], *, explicit: bool
) -> PostgresSettings | None:
    """Pick the DSN (``dsn`` or ``$dsn_env``) and normalise its scheme; None = no DSN, skip.

    The default ``database`` check exists only when a DSN is configured; a check the user wrote
    into the file must have one.
    """
    key = f"{prefix}.dsn"
    dsn = settings.dsn.reveal()
    if not dsn and settings.dsn_env:
        dsn = environ.get(settings.dsn_env, "")
        key = f"{prefix}.dsn_env ({settings.dsn_env})"
    if not dsn:
        if explicit:
            raise ConfigError(
                f"{prefix}.dsn", f"no DSN: set dsn, or the environment variable named by dsn_env ({settings.dsn_env!r})"
            )
        return None
    return dataclasses.replace(settings, dsn=Secret(normalize_dsn(dsn, key)))


_DSN_SCHEMES = re.compile(r"^(postgres|postgresql)(\+(psycopg2|psycopg|asyncpg|pg8000|psycopg2cffi))?://", re.IGNORECASE)


def normalize_dsn(dsn: str, key: str) -> str:
    """Accept ``postgres://``, ``postgresql://`` and SQLAlchemy ``postgresql+driver://``."""
    match = _DSN_SCHEMES.match(dsn)
    if not match:
        scheme = dsn.split("://", 1)[0] if "://" in dsn else ""
        shown = f"{scheme!r}" if scheme and len(scheme) < 40 and "@" not in scheme else "missing"
        raise ConfigError(key, f"unsupported DSN scheme {shown}: use postgresql://user:password@host:port/dbname")
    normalized = "postgresql://" + dsn[match.end() :]
    try:
        parts = urlsplit(normalized)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        raise ConfigError(key, "invalid DSN: bad host or port (the DSN is not shown: it may hold the password)") from None
    return normalized


def _resolve_http(settings: HttpSettings, prefix: str, upstream: UpstreamConfig) -> HttpSettings:
    try:
        parse_status_ranges(settings.expect_status)
    except ValueError as exc:
        raise ConfigError(f"{prefix}.expect_status", str(exc)) from None
    if settings.url:
        if not _is_http_url(settings.url):
            raise ConfigError(f"{prefix}.url", f"must be an http(s) URL, got {settings.url!r}")
        return settings
    if not settings.path.startswith("/"):
        raise ConfigError(f"{prefix}.path", f'must start with "/", got {settings.path!r}')
    if upstream.url.startswith("unix:"):
        return dataclasses.replace(settings, url="http://localhost" + settings.path, unix_socket=upstream.url[5:])
    return dataclasses.replace(settings, url=upstream.url.rstrip("/") + settings.path)


def parse_status_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``"200-399"`` / ``"200,204,300-302"`` -> inclusive ranges."""
    ranges = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            lo, hi = int(low), int(high or low)
        except ValueError:
            raise ValueError(f'must look like "200-399" or "200,204", got {text!r}') from None
        if not 100 <= lo <= hi <= 599:
            raise ValueError(f"status codes must be 100-599 and ranges ascending, got {text!r}")
        ranges.append((lo, hi))
    return tuple(ranges)


# --- conversion ------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def _convert(hint: Any, value: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                raise ConfigError(key, "must be a finite number, got an integer too large for one") from None
            if not math.isfinite(number):
                raise ConfigError(key, f"must be a finite number, got {value!r}")
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ConfigError(key, f"must be a string, got {_type_name(value)}")
    elif get_origin(hint) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(key, "must be an array of strings")
    expected = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}[hint]
    return _fail_type(key, expected, value)


def _fail_type(key: str, expected: str, value: Any) -> typing.NoReturn:
    raise ConfigError(key, f"must be {expected}, got {_type_name(value)}")


# --- environment overrides -------------------------------------------------------------------

_CHECK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CTL = re.compile(r"[\x00-\x1f\x7f]")
_COMMON_KEYS = {f.name for f in dataclasses.fields(CommonCheckKeys)}
_ALL_CHECK_KEYS = _COMMON_KEYS | {f.name for cls in CHECK_TYPES.values() for f in dataclasses.fields(cls)}
# Kubernetes injects <SERVICE>_SERVICE_HOST / _PORT... for every Service; never take those as config.
_K8S_SERVICE_ENV = re.compile(r".*_(SERVICE_HOST|SERVICE_PORT(_.*)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$")
_NOT_CONFIG_ENV = {"AGENT_CONFIG"}
_SECTIONS_LONGEST_FIRST = sorted([*SECTIONS, "checks"], key=len, reverse=True)
_CHECK_KEYS_LONGEST_FIRST = sorted(_ALL_CHECK_KEYS, key=len, reverse=True)


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any, str]]:
    """``AGENT_UPSTREAM_READ_TIMEOUT_S=5`` -> (["upstream", "read_timeout_s"], 5.0, origin).

    Names that do not start with a known section are left alone (other tools share the prefix),
    and so are Kubernetes service variables that name no key; a known section with an unknown
    key is an error.
    """
    found = []
    for env_name in sorted(environ):
        if not env_name.startswith("AGENT_") or env_name in _NOT_CONFIG_ENV:
            continue
        rest = env_name[len("AGENT_") :].lower()
        section = next((s for s in _SECTIONS_LONGEST_FIRST if rest.startswith(s + "_")), None)
        if section is None:
            continue
        origin = f"environment variable {env_name}"
        resolved = _resolve_env_key(section, rest[len(section) + 1 :])
        if resolved is None:
            if _K8S_SERVICE_ENV.match(env_name):
                continue
            raise ConfigError(f"{section}.{rest[len(section) + 1 :]} ({origin})", "unknown key")
        path, hint = resolved
        found.append((path, _parse_env_value(hint, environ[env_name], f"{'.'.join(path)} ({origin})"), origin))
    return found


def _resolve_env_key(section: str, tail: str) -> tuple[list[str], Any] | None:
    """The config path and type an env name's tail stands for, or None."""
    if section == "checks":
        key = next((k for k in _CHECK_KEYS_LONGEST_FIRST if tail.endswith("_" + k)), None)
        name = tail[: -len(key) - 1] if key else ""
        return (["checks", name, key], _check_key_hint(key)) if key and name else None
    cls = SECTIONS[section]
    hints = {f.name: get_type_hints(cls)[f.name] for f in dataclasses.fields(cls) if f.metadata}
    if tail in hints:
        return [section, tail], hints[tail]
    if cls is SecurityHeadersConfig:
        return [section, "-".join(p.capitalize() for p in tail.split("_"))], str
    return None


def _check_key_hint(key: str) -> Any:
    for cls in (CommonCheckKeys, *CHECK_TYPES.values()):
        hints = get_type_hints(cls)
        if key in hints:
            return hints[key]
    raise AssertionError(key)


def _parse_env_value(hint: Any, text: str, key: str) -> Any:
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, f"must be true or false, got {text!r}")
    if hint is int:
        try:
            return int(text.strip())
        except ValueError:
            raise ConfigError(key, f"must be an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text.strip())
        except ValueError:
            raise ConfigError(key, f"must be a number, got {text!r}") from None
    if get_origin(hint) is tuple:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError:
                raise ConfigError(key, "must be a JSON array of strings or a comma-separated list") from None
            return value
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return text


def _set_path(table: ConfigTable, path: list[str], value: Any, origin: str) -> None:
    node = table
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(path[: i + 1]), f"is not a table, cannot apply {origin}")
        node = child
    node[path[-1]] = value


# --- printing --------------------------------------------------------------------------------


def to_public_dict(config: AgentConfig) -> dict[str, Any]:
    """The effective config as plain data with every secret masked (for ``check-config``)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Secret):
            return value.masked()
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    out: dict[str, Any] = {}
    for name in SECTIONS:
        section = plain(getattr(config, name))
        if name == "security_headers":
            section["headers"] = {k: v for k, v in getattr(config, name).headers}
        out[name] = section
    out["checks"] = {}
    for check in config.checks:
        entry = plain(check)
        entry.pop("name")
        entry.update(entry.pop("settings"))
        out["checks"][check.name] = entry
    return out
