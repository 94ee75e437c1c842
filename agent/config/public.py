"""The effective config as plain data with every secret masked: what ``check-config`` prints."""

from __future__ import annotations

import dataclasses
from typing import Any

from agent.config.schema import SECTIONS, AgentConfig
from agent.secrets import Secret


def to_public_dict(config: AgentConfig) -> dict[str, Any]:
    """The effective config as plain data with every secret masked (for ``check-config``)."""
    out: dict[str, Any] = {}
    for name in SECTIONS:
        section = _plain(getattr(config, name))
        if name == "security_headers":
            section["headers"] = {k: v for k, v in getattr(config, name).headers}
        out[name] = section
    out["checks"] = {}
    for check in config.checks:
        entry = _plain(check)
        entry.pop("name")
        entry.update(entry.pop("settings"))
        out["checks"][check.name] = entry
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.masked()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
