"""``[checks.NAME]`` tables: merged over the built-in checks, validated, resolved into CheckConfig.

Built in: ``upstream`` (http) and ``disk``, plus ``database`` (postgres) only when a DSN is
configured. Unset timing keys inherit from ``[health]``; an http check without ``url`` talks to
the upstream, so it takes ``upstream.url`` and ``[upstream.tls]`` (keys of its own ``tls`` win).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from agent.config.convert import build_section, type_name
from agent.config.errors import ConfigError
from agent.config.fields import CHECK_NAME, is_http_url, parse_status_ranges
from agent.config.schema import (
    CHECK_TYPES,
    DEFAULT_CHECKS,
    CheckConfig,
    CheckSettings,
    ClientTlsConfig,
    CommonCheckKeys,
    ConfigTable,
    DiskSettings,
    HealthConfig,
    HttpSettings,
    MemorySettings,
    PostgresSettings,
    TcpSettings,
    UpstreamConfig,
)
from agent.config.tls import check_tls_files, validate_client_tls
from agent.secrets import Secret

COMMON_KEYS = frozenset(f.name for f in dataclasses.fields(CommonCheckKeys))


def build_checks(
    raw_checks: Any, health: HealthConfig, upstream: UpstreamConfig, environ: Mapping[str, str]
) -> tuple[tuple[CheckConfig, ...], tuple[tuple[str, str], ...]]:
    """(the enabled checks, (name, type) of the disabled ones), built-in names first, then file order."""
    checks, disabled = [], []
    for name, raw in _merge_with_defaults(raw_checks).items():
        common, settings = _parse_check(name, raw)
        if not common.enabled:
            disabled.append((name, common.type))
            continue
        resolved = _resolve_settings(settings, f"checks.{name}", raw, upstream, environ, explicit=name in raw_checks)
        if resolved is not None:
            checks.append(_check_config(name, common, resolved, health))
    return tuple(checks), tuple(disabled)


def _merge_with_defaults(raw_checks: Any) -> dict[str, ConfigTable]:
    if not isinstance(raw_checks, dict):
        raise ConfigError("checks", f"must be a table of [checks.NAME] tables, got {type_name(raw_checks)}")
    merged: dict[str, ConfigTable] = {name: dict(t) for name, t in DEFAULT_CHECKS.items()}
    for name, raw in raw_checks.items():
        if not isinstance(raw, dict):
            raise ConfigError(f"checks.{name}", f"must be a table, got {type_name(raw)}")
        if not CHECK_NAME.fullmatch(name):
            raise ConfigError(f"checks.{name}", "check names use a-z, 0-9, _ and - (max 63)")
        base = merged.get(name, {})
        if "type" in raw and base.get("type") not in (None, raw["type"]):
            base = {}  # a default name reused for another type starts from scratch
        merged[name] = {**base, **raw}
    return merged


def _parse_check(name: str, raw: ConfigTable) -> tuple[CommonCheckKeys, CheckSettings]:
    """The keys every check has, and the settings of its type; every key is checked, enabled or not."""
    prefix = f"checks.{name}"
    if "type" not in raw:
        raise ConfigError(f"{prefix}.type", f"is required ({' | '.join(CHECK_TYPES)})")
    common: CommonCheckKeys = build_section(CommonCheckKeys, {k: v for k, v in raw.items() if k in COMMON_KEYS}, prefix)
    settings_raw = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    settings: CheckSettings = build_section(CHECK_TYPES[common.type], settings_raw, prefix)
    return common, settings


def _check_config(name: str, common: CommonCheckKeys, settings: CheckSettings, health: HealthConfig) -> CheckConfig:
    return CheckConfig(
        name=name,
        type=common.type,
        critical=common.critical,
        interval_s=common.interval_s or health.interval_s,
        timeout_s=common.timeout_s or health.timeout_s,
        failure_threshold=common.failure_threshold or health.failure_threshold,
        success_threshold=common.success_threshold or health.success_threshold,
        settings=settings,
    )


def _resolve_settings(
    settings: CheckSettings,
    prefix: str,
    raw: ConfigTable,
    upstream: UpstreamConfig,
    environ: Mapping[str, str],
    *,
    explicit: bool,
) -> CheckSettings | None:
    if isinstance(settings, PostgresSettings):
        return _resolve_dsn(settings, prefix, environ, explicit=explicit)
    if isinstance(settings, HttpSettings):
        return _resolve_http(settings, prefix, upstream, raw.get("tls", {}))
    if isinstance(settings, DiskSettings) and settings.fail_free_ratio > settings.warn_free_ratio:
        raise ConfigError(f"{prefix}.fail_free_ratio", "must be <= warn_free_ratio")
    if isinstance(settings, MemorySettings) and settings.fail_used_ratio < settings.warn_used_ratio:
        raise ConfigError(f"{prefix}.fail_used_ratio", "must be >= warn_used_ratio")
    if isinstance(settings, TcpSettings) and settings.port == 0:
        raise ConfigError(f"{prefix}.port", "is required for a tcp check")
    return settings


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


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,39}")


def normalize_dsn(dsn: str, key: str) -> str:
    """Accept ``postgres://``, ``postgresql://`` and SQLAlchemy ``postgresql+driver://``."""
    match = _DSN_SCHEMES.match(dsn)
    if not match:
        scheme = dsn.split("://", 1)[0] if "://" in dsn else ""
        # Shown only when it is a scheme (RFC 3986 §3.1): without one, the text before a later
        # "://" (in the query, say) is the user, the password and the host.
        shown = f"{scheme!r}" if _SCHEME.fullmatch(scheme) else "missing"
        raise ConfigError(key, f"unsupported DSN scheme {shown}: use postgresql://user:password@host:port/dbname")
    normalized = "postgresql://" + dsn[match.end() :]
    try:
        parts = urlsplit(normalized)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        raise ConfigError(key, "invalid DSN: bad host or port (the DSN is not shown: it may hold the password)") from None
    return normalized


def _resolve_http(settings: HttpSettings, prefix: str, upstream: UpstreamConfig, raw_tls: ConfigTable) -> HttpSettings:
    """Validate ``expect_status``; without a ``url``, take the upstream's URL (or unix socket) and TLS."""
    try:
        parse_status_ranges(settings.expect_status)
    except ValueError as exc:
        raise ConfigError(f"{prefix}.expect_status", str(exc)) from None
    if settings.url:
        if not is_http_url(settings.url):
            raise ConfigError(f"{prefix}.url", f"must be an http(s) URL, got {settings.url!r}")
        return _with_checked_tls(settings, settings.tls, prefix, upstream)
    if not settings.path.startswith("/"):
        raise ConfigError(f"{prefix}.path", f'must start with "/", got {settings.path!r}')
    # Keys the check's own [checks.NAME.tls] sets win over [upstream.tls] (raw_tls holds only
    # known keys: build_section has checked them).
    tls = dataclasses.replace(upstream.tls, **{key: getattr(settings.tls, key) for key in raw_tls})
    if upstream.url.startswith("unix:"):
        settings = dataclasses.replace(settings, url="http://localhost" + settings.path, unix_socket=upstream.url[5:])
    else:
        settings = dataclasses.replace(settings, url=upstream.url.rstrip("/") + settings.path)
    return _with_checked_tls(settings, tls, prefix, upstream)


def _with_checked_tls(settings: HttpSettings, tls: ClientTlsConfig, prefix: str, upstream: UpstreamConfig) -> HttpSettings:
    """``settings`` with ``tls``, whose files load (unless they are the upstream's, checked already)."""
    if tls != upstream.tls:
        validate_client_tls(tls, f"{prefix}.tls")
        check_tls_files(tls, f"{prefix}.tls")
    return dataclasses.replace(settings, tls=tls)
