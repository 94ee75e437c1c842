"""Configuration: one TOML file plus ``AGENT_*`` environment overrides, validated once, frozen.

``load_config(path, environ)`` is the only function that reads files or the environment. Every
error is a :class:`ConfigError` whose message starts with the full key (``upstream.read_timeout_s:
must be > 0, got -1``); the CLI turns it into exit code 2 before any port is bound.

Modules: ``schema`` (the frozen dataclasses), ``fields`` (field helper, validators), ``headers``
(default security headers), ``convert`` (table -> section), ``load`` (file, cross-section
validation), ``env`` (``AGENT_*`` overrides), ``checks`` (``[checks.*]``, DSNs), ``tls`` (the
``[*.tls]`` tables and the files they name), ``public`` (the masked dump ``check-config`` prints)
and ``exposure`` (secrets and private keys in a readable file).
"""

from __future__ import annotations

from agent.config.checks import normalize_dsn
from agent.config.errors import ConfigError
from agent.config.exposure import ReadableSecretFile, private_key_files, readable_secret_files, readable_secret_warning
from agent.config.fields import (
    Validator,
    listen_address,
    non_negative,
    one_of,
    parse_listen,
    parse_status_ranges,
    positive,
    ratio,
)
from agent.config.headers import DEFAULT_REMOVED_HEADERS, DEFAULT_SECURITY_HEADERS
from agent.config.load import build_config, load_config
from agent.config.public import to_public_dict
from agent.config.schema import (
    CHECK_TYPES,
    DEFAULT_CHECKS,
    SECTIONS,
    AdminConfig,
    AgentConfig,
    CheckConfig,
    CheckSettings,
    ClientTlsConfig,
    CommonCheckKeys,
    ConfigTable,
    CorsConfig,
    DiskSettings,
    HealthConfig,
    HttpSettings,
    ListenerTlsConfig,
    LoggingConfig,
    MemorySettings,
    MetricsConfig,
    PostgresSettings,
    ProxyConfig,
    RequestIdConfig,
    SecurityHeadersConfig,
    ServerConfig,
    TcpSettings,
    UpstreamConfig,
)

__all__ = [
    "CHECK_TYPES",
    "DEFAULT_CHECKS",
    "DEFAULT_REMOVED_HEADERS",
    "DEFAULT_SECURITY_HEADERS",
    "SECTIONS",
    "AdminConfig",
    "AgentConfig",
    "CheckConfig",
    "CheckSettings",
    "ClientTlsConfig",
    "CommonCheckKeys",
    "ConfigError",
    "ConfigTable",
    "CorsConfig",
    "DiskSettings",
    "HealthConfig",
    "HttpSettings",
    "ListenerTlsConfig",
    "LoggingConfig",
    "MemorySettings",
    "MetricsConfig",
    "PostgresSettings",
    "ProxyConfig",
    "ReadableSecretFile",
    "RequestIdConfig",
    "SecurityHeadersConfig",
    "ServerConfig",
    "TcpSettings",
    "UpstreamConfig",
    "Validator",
    "build_config",
    "listen_address",
    "load_config",
    "non_negative",
    "normalize_dsn",
    "one_of",
    "parse_listen",
    "parse_status_ranges",
    "positive",
    "private_key_files",
    "ratio",
    "readable_secret_files",
    "readable_secret_warning",
    "to_public_dict",
]
