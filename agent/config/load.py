"""``load_config(path, environ)``: the only function that reads the config file or the environment.

Every error is a :class:`ConfigError` whose message starts with the full key (``upstream.read_timeout_s:
must be > 0, got -1``); the CLI turns it into exit code 2 before any port is bound.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.config.checks import build_checks
from agent.config.convert import build_section, type_name
from agent.config.env import apply_env_overrides
from agent.config.errors import ConfigError
from agent.config.exposure import secret_keys
from agent.config.fields import CONTROL_CHARS, HEADER_NAME, is_http_url, parse_listen
from agent.config.headers import DEFAULT_SECURITY_HEADERS
from agent.config.schema import (
    SECTIONS,
    AdminConfig,
    AgentConfig,
    ConfigTable,
    CorsConfig,
    LoggingConfig,
    RequestIdConfig,
    SecurityHeadersConfig,
)
from agent.config.tls import check_tls_files, validate_client_tls, validate_listener_tls
from agent.config.tracing import resolve_tracing
from agent.rules.ids import compile_request_id_pattern
from agent.secrets import Secret


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
    in_file = secret_keys(table)
    apply_env_overrides(table, environ)
    return dataclasses.replace(build_config(table, environ, source), secret_keys_in_file=in_file)


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
            raise ConfigError(name, f"must be a table, got {type_name(raw)}")
        if cls is SecurityHeadersConfig:
            sections[name] = _build_security_headers(raw)
        else:
            sections[name] = build_section(cls, raw, name)
    admin: AdminConfig = sections["admin"]
    if not admin.token.reveal() and admin.token_env:
        sections["admin"] = dataclasses.replace(admin, token=Secret(environ.get(admin.token_env, "")))
    sections["security_headers"] = _keep_request_id_header(sections["security_headers"], sections["request_id"])
    sections["tracing"] = resolve_tracing(sections["tracing"], table.get("tracing", {}), environ)
    _validate_cross_section(sections)
    checks, disabled = build_checks(table.get("checks", {}), sections["health"], sections["upstream"], environ)
    return AgentConfig(**sections, checks=checks, disabled_checks=disabled, source=source)


def _build_security_headers(raw: Mapping[str, Any]) -> SecurityHeadersConfig:
    """The file keys, then every other key as a header: a value replaces the default, "" removes it."""
    base: SecurityHeadersConfig = build_section(SecurityHeadersConfig, raw, "security_headers", extra_ok=True)
    known = {f.name for f in dataclasses.fields(SecurityHeadersConfig) if f.metadata}
    headers = {name.lower(): (name, value) for name, value in DEFAULT_SECURITY_HEADERS}
    for key, value in raw.items():
        if key in known:
            continue
        full = f"security_headers.{key}"
        if not HEADER_NAME.fullmatch(key) or key == "headers":
            raise ConfigError(full, "unknown key, and not a valid header name")
        if not isinstance(value, str) or CONTROL_CHARS.search(value):
            raise ConfigError(full, "must be a header value string without control characters")
        if value == "":
            headers.pop(key.lower(), None)
        else:
            headers[key.lower()] = (key, value)
    return dataclasses.replace(base, headers=tuple(headers.values()))


def _keep_request_id_header(security: SecurityHeadersConfig, request_id: RequestIdConfig) -> SecurityHeadersConfig:
    """The agent sends ``request_id.header`` on every response: it is never in the removal list
    (``X-Kong-Request-Id`` is in OWASP's, for one)."""
    own = request_id.header.lower()
    remove = tuple(name for name in security.remove if name.lower() != own)
    return security if len(remove) == len(security.remove) else dataclasses.replace(security, remove=remove)


def _validate_cross_section(sections: Mapping[str, Any]) -> None:
    """What one field's validator cannot see: combinations, and values that need parsing."""
    _validate_cors(sections["cors"])
    for i, cidr in enumerate(sections["proxy"].trusted_proxies):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"proxy.trusted_proxies[{i}]", f"not a CIDR: {cidr!r}") from None
    _validate_request_id(sections["request_id"])
    for i, protocol in enumerate(sections["proxy"].upgrades):
        if not HEADER_NAME.fullmatch(protocol):  # an Upgrade protocol name is a token (RFC 9110 §7.8)
            raise ConfigError(f"proxy.upgrades[{i}]", f'must be a protocol token like "websocket", got {protocol!r}')
    url = sections["upstream"].url
    if not (is_http_url(url) or url.startswith("unix:/")):
        raise ConfigError("upstream.url", f'must be "http://host:port", "https://host:port" or "unix:/path", got {url!r}')
    for i, template in enumerate(sections["metrics"].routes):
        if not template.startswith("/") or any(c in template for c in " ?#"):
            raise ConfigError(f"metrics.routes[{i}]", f'must be a path template like "/api/v1/plans/{{id}}", got {template!r}')
    prefix = sections["health"].path_prefix
    if not prefix.startswith("/") or prefix.endswith("/") or " " in prefix:
        raise ConfigError("health.path_prefix", f'must start with "/" and not end with one, got {prefix!r}')
    logging_cfg: LoggingConfig = sections["logging"]
    if logging_cfg.file:
        _validate_log_file(Path(logging_cfg.file))
    admin: AdminConfig = sections["admin"]
    if admin.enabled and parse_listen(admin.listen)[1] == parse_listen(sections["server"].listen)[1] != 0:
        raise ConfigError("admin.listen", "must use a different port than server.listen")
    _validate_tls(sections)


def _validate_tls(sections: Mapping[str, Any]) -> None:
    """The listeners' and the upstream's ``tls`` tables; the admin one only when that listener runs."""
    listeners = ["server", "admin"] if sections["admin"].enabled else ["server"]
    for name in listeners:
        validate_listener_tls(sections[name].tls, f"{name}.tls")
    validate_client_tls(sections["upstream"].tls, "upstream.tls")
    for name in [*listeners, "upstream"]:
        check_tls_files(sections[name].tls, f"{name}.tls")


def _validate_cors(cors: CorsConfig) -> None:
    if "*" in cors.allowed_origins and cors.allow_credentials:
        raise ConfigError("cors.allow_credentials", 'cannot be true when allowed_origins contains "*"')


def _validate_request_id(rid: RequestIdConfig) -> None:
    if not rid.pattern.isascii():  # request ids are ASCII (agent.rules.ids): the pattern is applied to bytes
        raise ConfigError("request_id.pattern", f"must be ASCII (request ids are), got {rid.pattern!r}")
    try:
        compile_request_id_pattern(rid.pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise ConfigError("request_id.pattern", f"invalid regular expression: {type(exc).__name__}: {exc}") from None
    if not HEADER_NAME.fullmatch(rid.header):
        raise ConfigError("request_id.header", f"not a valid header name: {rid.header!r}")


def _validate_log_file(path: Path) -> None:
    if not path.parent.is_dir():
        raise ConfigError("logging.file", f"directory does not exist: {str(path.parent)!r}")
    if path.is_dir():
        raise ConfigError("logging.file", f"is a directory: {str(path)!r}")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise ConfigError("logging.file", f"not writable: {str(path)!r}")
