"""RFC 3339 timestamps for logs and error documents."""

from __future__ import annotations

import time
from typing import Final

_last_second: Final[list[object]] = [-1, ""]


def rfc3339(epoch_s: float) -> str:
    """UTC, millisecond precision: ``2026-11-26T02:53:41.123Z`` (the second's prefix is cached)."""
    whole = int(epoch_s)
    if whole != _last_second[0]:
        _last_second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_last_second[1]}.{int((epoch_s - whole) * 1000):03d}Z"
