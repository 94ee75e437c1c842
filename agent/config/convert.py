"""From a parsed TOML table to one frozen section: key check, type conversion, field validator.

A file key whose type is itself a section dataclass (``ServerConfig.tls``) is a nested table,
built the same way under its own prefix (``server.tls.cert_file``).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any, get_origin, get_type_hints

from agent.config.errors import ConfigError
from agent.config.schema import HeaderTable
from agent.secrets import Secret


def type_name(value: Any) -> str:
    """The TOML name of a value's type, for messages."""
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def file_key_hints(cls: type[Any]) -> dict[str, Any]:
    """The type of every file key of section ``cls`` (the fields made with ``opt``), in field order."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.metadata}


def is_section(hint: Any) -> bool:
    """Whether a field of this type is a nested table rather than a value."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def build_section(cls: type[Any], raw: Mapping[str, Any], prefix: str, *, extra_ok: bool = False) -> Any:
    """``cls`` built from the file keys in ``raw``; unknown keys are errors unless ``extra_ok``."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    names = {f.name: f for f in dataclasses.fields(cls) if f.metadata}
    for key, value in raw.items():
        full = f"{prefix}.{key}"
        if key not in names:
            if extra_ok:
                continue
            raise ConfigError(full, f"unknown key (known: {', '.join(sorted(names))})")
        converted = convert(hints[key], value, full)
        problem = names[key].metadata["check"](converted) if names[key].metadata["check"] else None
        if problem:
            raise ConfigError(full, problem)
        values[key] = converted
    return cls(**values)


def convert(hint: Any, value: Any, key: str) -> Any:
    """``value`` as the field type ``hint`` (ints are accepted for floats), else a ConfigError."""
    if is_section(hint):
        if isinstance(value, dict):
            return build_section(hint, value, key)
        raise ConfigError(key, f"must be a table, got {type_name(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _finite_float(value, key)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ConfigError(key, f"must be a string, got {type_name(value)}")
    elif hint == HeaderTable:
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return tuple((name, Secret(v)) for name, v in value.items())
        raise ConfigError(key, 'must be a table of strings, like {"api-key" = "..."}')
    elif get_origin(hint) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(key, "must be an array of strings")
    expected = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}[hint]
    return _fail_type(key, expected, value)


def _finite_float(value: int | float, key: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise ConfigError(key, "must be a finite number, got an integer too large for one") from None
    if not math.isfinite(number):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    return number


def _fail_type(key: str, expected: str, value: Any) -> typing.NoReturn:
    raise ConfigError(key, f"must be {expected}, got {type_name(value)}")
