"""Secrets written into the config file, and the warning when that file is readable by group/others.

A secret is a non-empty ``admin.token`` or a ``checks.NAME.dsn`` holding a password (what
``check-config`` masks). Only the file's own keys count: a secret from the environment is not in
the file, and one the environment overrides still is.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import Any

from agent.config.schema import AgentConfig, ConfigTable
from agent.secrets import Secret

READABLE_BY_GROUP_OR_OTHERS = stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True, slots=True)
class ReadableSecretFile:
    """A config file holding secrets (``keys``) whose permission bits (``mode``) let others read it."""

    path: str
    mode: int
    keys: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"config file {self.path} holds a secret ({', '.join(self.keys)})"
            f" and is readable by group/others (mode {self.mode:04o})"
        )


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
