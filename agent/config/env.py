"""``AGENT_<SECTION>_<KEY>`` environment overrides, applied over the file's table (SPEC §7).

Nested tables are joined with ``_`` (``AGENT_CHECKS_DATABASE_DSN``, ``AGENT_SERVER_TLS_CERT_FILE``,
``AGENT_CHECKS_UPSTREAM_TLS_CA_FILE``); values are parsed by the key's type (booleans
``1/true/yes/on``, lists as JSON arrays or comma-separated).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, get_origin
from urllib.parse import unquote

from agent.compiled import PURE_ENV
from agent.config.convert import file_key_hints, is_section
from agent.config.errors import ConfigError
from agent.config.schema import CHECK_TYPES, SECTIONS, CommonCheckKeys, ConfigTable, HeaderTable, SecurityHeadersConfig

EnvOverride = tuple[list[str], Any, str]  # (config path, value, "environment variable NAME")
EnvKey = tuple[list[str], Any]  # (config path below the section or check, type)

# Kubernetes injects <SERVICE>_SERVICE_HOST / _PORT... for every Service; never take those as config.
_K8S_SERVICE_ENV = re.compile(r".*_(SERVICE_HOST|SERVICE_PORT(_.*)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)$")
_NOT_CONFIG_ENV = {"AGENT_CONFIG", PURE_ENV}
_SECTIONS_LONGEST_FIRST = sorted([*SECTIONS, "checks"], key=len, reverse=True)


def _env_keys(cls: type[Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, EnvKey]]:
    """(env name tail, (config path, type)) of every file key of ``cls``, nested tables joined with ``_``."""
    for name, hint in file_key_hints(cls).items():
        if is_section(hint):
            yield from _env_keys(hint, (*path, name))
        else:
            yield "_".join((*path, name)), ([*path, name], hint)


_SECTION_ENV_KEYS = {section: dict(_env_keys(cls)) for section, cls in SECTIONS.items()}
# A check's tail is NAME_KEY and names may hold "_": the longest key that ends the tail wins.
_CHECK_ENV_KEYS = dict(
    sorted(
        {tail: key for cls in (*CHECK_TYPES.values(), CommonCheckKeys) for tail, key in _env_keys(cls)}.items(),
        key=lambda item: len(item[0]),
        reverse=True,
    )
)


def apply_env_overrides(table: ConfigTable, environ: Mapping[str, str]) -> None:
    """Write every ``AGENT_*`` override into ``table`` (the environment wins over the file)."""
    for path, value, origin in env_overrides(environ):
        _set_path(table, path, value, origin)


def env_overrides(environ: Mapping[str, str]) -> list[EnvOverride]:
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
        key = next((k for k in _CHECK_ENV_KEYS if tail.endswith("_" + k)), None)
        name = tail[: -len(key) - 1] if key else ""
        if not key or not name:
            return None
        path, hint = _CHECK_ENV_KEYS[key]
        return ["checks", name, *path], hint
    if tail in _SECTION_ENV_KEYS[section]:
        path, hint = _SECTION_ENV_KEYS[section][tail]
        return [section, *path], hint
    if SECTIONS[section] is SecurityHeadersConfig:
        return [section, "-".join(p.capitalize() for p in tail.split("_"))], str
    return None


def _parse_env_value(hint: Any, text: str, key: str) -> Any:
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, f"must be true or false, got {text!r}")
    if hint is int or hint is float:
        try:
            return hint(text.strip())
        except ValueError:
            raise ConfigError(key, f"must be {'an integer' if hint is int else 'a number'}, got {text!r}") from None
    if hint == HeaderTable:
        return parse_header_list(text, key)
    if get_origin(hint) is tuple:
        return _parse_env_list(text, key)
    return text


def parse_header_list(text: str, key: str) -> dict[str, str]:
    """``name=value,name2=value2`` (OpenTelemetry's OTEL_EXPORTER_OTLP_HEADERS form, values
    percent-encoded) or a JSON object."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            parsed = json.loads(stripped)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and all(isinstance(v, str) for v in parsed.values()):
            return parsed
        raise ConfigError(key, "must be a JSON object of strings or name=value pairs separated by commas")
    headers = {}
    for item in filter(None, (part.strip() for part in stripped.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(key, "must be name=value pairs separated by commas")
        headers[unquote(name.strip())] = unquote(value.strip())
    return headers


def _parse_env_list(text: str, key: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except ValueError:
            raise ConfigError(key, "must be a JSON array of strings or a comma-separated list") from None
    return [item.strip() for item in stripped.split(",") if item.strip()]


def _set_path(table: ConfigTable, path: list[str], value: Any, origin: str) -> None:
    node = table
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(path[: i + 1]), f"is not a table, cannot apply {origin}")
        node = child
    node[path[-1]] = value
