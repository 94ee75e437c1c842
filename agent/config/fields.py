"""Field helpers and value validators shared by the config sections.

A validator takes a converted value and returns a problem (``"must be > 0, got -1"``) or None;
the loader prefixes the full key. ``opt`` attaches a default, a validator and a doc line to a
dataclass field: fields with that metadata are file keys, the others are derived.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field
from typing import Any
from urllib.parse import urlsplit

Validator = Callable[[Any], str | None]

# RFC 9110 §5.6.2 token: what a header name may hold.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
CHECK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def opt(default: Any, *, check: Validator | None = None, doc: str = "") -> Any:
    """A file key: its default, how to validate it, and the line ``agent.toml.example`` shows."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for defaults")
    return field(default=default, metadata={"check": check, "doc": doc})


def positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value!r}"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value!r}"


def ratio(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be between 0 and 1, got {value!r}"


def tcp_port(value: Any) -> str | None:
    return None if 0 < value < 65536 else f"must be 1-65535, got {value!r}"


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


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
