"""The effective config as a config file with every secret masked: what ``check-config`` prints.

Only keys a file may hold are printed, so the output (secrets aside) loads back to an equal
config: security headers as ``"Header-Name" = "value"`` keys (``""`` for a removed default),
check timings resolved against ``[health]``, DSNs from ``dsn_env`` as the check's ``dsn``,
disabled checks as ``enabled = false``, and derived fields (an http check's unix socket) left out.
Nested tables (``[server.tls]``) print as nested tables, every key shown; an http check's
``tls`` as it resolved (what it took from ``[upstream.tls]`` written out).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from agent.config.headers import DEFAULT_SECURITY_HEADERS
from agent.config.schema import SECTIONS, AgentConfig, CheckConfig, HttpSettings, SecurityHeadersConfig
from agent.secrets import MASK, Secret


def to_public_dict(config: AgentConfig) -> dict[str, Any]:
    """The effective config as plain data with every secret masked (for ``check-config``)."""
    out: dict[str, Any] = {name: _file_keys(getattr(config, name)) for name in SECTIONS}
    out["security_headers"].update(_header_keys(config.security_headers))
    checks = {check.name: _check_keys(check) for check in config.checks}
    checks.update({name: {"type": type_, "enabled": False} for name, type_ in config.disabled_checks})
    out["checks"] = checks
    return out


def _file_keys(section: Any) -> dict[str, Any]:
    """The fields a file may set (those with metadata), as plain data."""
    return {f.name: _plain(f.name, getattr(section, f.name)) for f in dataclasses.fields(section) if f.metadata}


def _header_keys(security: SecurityHeadersConfig) -> dict[str, str]:
    """Each header sent, and ``""`` for each default one that is not (how a file removes it)."""
    keys = dict(security.headers)
    sent = {name.lower() for name in keys}
    keys.update({name: "" for name, _ in DEFAULT_SECURITY_HEADERS if name.lower() not in sent})
    return keys


def _check_keys(check: CheckConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": check.type,
        "critical": check.critical,
        "interval_s": check.interval_s,
        "timeout_s": check.timeout_s,
        "failure_threshold": check.failure_threshold,
        "success_threshold": check.success_threshold,
    }
    entry.update(_file_keys(check.settings))
    if isinstance(check.settings, HttpSettings) and check.settings.unix_socket:
        entry["url"] = ""  # the URL was derived for the upstream's socket: a file leaves it empty
    return entry


def _plain(name: str, value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _file_keys(value)
    if isinstance(value, Secret):
        # A DSN keeps its shape with the password masked; any other secret (a token) is masked whole.
        if name == "dsn":
            return value.masked()
        return MASK if value.reveal() else ""
    if name == "headers" and isinstance(value, tuple):
        return {header: MASK for header, _ in value}  # tracing.headers: the values are secrets
    if isinstance(value, tuple):
        return list(value)
    return value
