"""Files holding a secret, and the warning when one is readable by group/others.

Two kinds: the config file, when it holds a secret, and every TLS private key file the config
names (``server.tls.key_file``, ...). In the config file, a secret is a non-empty ``admin.token``
or a ``checks.NAME.dsn`` holding a password (what ``check-config`` masks). Only the file's own
keys count: a secret from the environment is not in the file, and one the environment
overrides still is. The decisions are pure (path, mode, config); the CLI stats the files.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config.schema import AgentConfig, ClientTlsConfig, ConfigTable, HttpSettings, ListenerTlsConfig
from agent.secrets import Secret

READABLE_BY_GROUP_OR_OTHERS = stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True, slots=True)
class ReadableSecretFile:
    """A file holding secrets whose permission bits (``mode``) let others read it: the config
    file (``keys``: its keys that hold one) or a private key file (``keys``: the keys naming it)."""

    path: str
    mode: int
    keys: tuple[str, ...]
    is_private_key: bool = False

    def __str__(self) -> str:
        if self.is_private_key:
            return f"private key file {self.path} ({', '.join(self.keys)}) is readable by group/others (mode {self.mode:04o})"
        return (
            f"config file {self.path} holds a secret ({', '.join(self.keys)})"
            f" and is readable by group/others (mode {self.mode:04o})"
        )

    def log_event(self) -> tuple[str, dict[str, Any]]:
        """(message, extra) of the warning ``run`` logs: stable keys, no values in the message."""
        mode = f"{self.mode:04o}"
        if self.is_private_key:
            return "private key file is readable by group/others", {
                "key_file": self.path,
                "mode": mode,
                "config_keys": list(self.keys),
            }
        extra = {"config_file": self.path, "mode": mode, "secret_keys": list(self.keys)}
        return "config file holding a secret is readable by group/others", extra


def secret_keys(table: ConfigTable) -> tuple[str, ...]:
    """The keys of a parsed config file (before environment overrides) that hold a secret."""
    keys = []
    admin = table.get("admin")
    if isinstance(admin, dict) and isinstance(admin.get("token"), str) and admin["token"]:
        keys.append("admin.token")
    checks = table.get("checks")
    for name, check in checks.items() if isinstance(checks, dict) else ():
        if isinstance(check, dict) and _is_secret(check.get("dsn")):
            keys.append(f"checks.{name}.dsn")
    return tuple(keys)


def _is_secret(value: Any) -> bool:
    """A DSN holding a password (in its user info or its query)."""
    return isinstance(value, str) and bool(value) and Secret(value).has_password()


def readable_secret_warning(path: str, mode: int, config: AgentConfig) -> ReadableSecretFile | None:
    """The warning for config file ``path`` with ``st_mode`` ``mode``, or None when there is nothing to say."""
    permissions = stat.S_IMODE(mode)
    if not config.secret_keys_in_file or not permissions & READABLE_BY_GROUP_OR_OTHERS:
        return None
    return ReadableSecretFile(path, permissions, config.secret_keys_in_file)


def private_key_files(config: AgentConfig) -> dict[str, tuple[str, ...]]:
    """Every TLS private key file the running agent uses -> the keys naming it, in config order."""
    tables: list[tuple[str, ListenerTlsConfig | ClientTlsConfig]] = [
        ("server.tls", config.server.tls),
        ("upstream.tls", config.upstream.tls),
    ]
    if config.admin.enabled:
        tables.insert(1, ("admin.tls", config.admin.tls))
    tables += [(f"checks.{c.name}.tls", c.settings.tls) for c in config.checks if isinstance(c.settings, HttpSettings)]
    files: dict[str, tuple[str, ...]] = {}
    for prefix, tls in tables:
        if tls.key_file:
            files[tls.key_file] = (*files.get(tls.key_file, ()), f"{prefix}.key_file")
    return files


def readable_secret_files(config: AgentConfig, mode_of: Callable[[str], int | None]) -> tuple[ReadableSecretFile, ...]:
    """The warnings for the config file and each private key file; ``mode_of(path)`` is its
    ``st_mode``, or None when it cannot be told (the file is then not warned about)."""
    found = []
    mode = mode_of(config.source) if config.secret_keys_in_file else None
    if mode is not None and (exposed := readable_secret_warning(config.source, mode, config)):
        found.append(exposed)
    for path, keys in private_key_files(config).items():
        mode = mode_of(path)
        if mode is not None and stat.S_IMODE(mode) & READABLE_BY_GROUP_OR_OTHERS:
            found.append(ReadableSecretFile(path, stat.S_IMODE(mode), keys, is_private_key=True))
    return tuple(found)
