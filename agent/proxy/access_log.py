"""The access log of the main listener: one JSON line per request, written in batches.

Lines are rendered like every other log line (``agent.logs.record_fields`` keys) but skip the
``logging`` machinery: they are collected and written every ``FLUSH_INTERVAL_S`` (or at 256 KiB)
with a single ``write`` of whole lines, so a line is never split and the per-request cost stays
small (nginx's buffered access log makes the same trade, with a 1 s flush). When a
log file is configured, or the level filters INFO out, lines go through ``logging`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import IO, Any, Final

import orjson

from agent.rules.access import LOGGER_NAME

__all__ = ["LOGGER_NAME", "AccessLog"]

FLUSH_INTERVAL_S: Final = 0.05
MAX_PENDING_BYTES: Final = 256 * 1024


class AccessLog:
    def __init__(self, *, enabled: bool, direct: bool, stream: IO[bytes] | None = None) -> None:
        self.enabled = enabled and logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO)
        self.direct = direct
        self._stream = stream
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._scheduled = False
        self._log = logging.getLogger(LOGGER_NAME)

    def write(self, event: dict[str, Any]) -> None:
        """One event: ``timestamp``, ``level``, ``logger`` and ``message`` first, then its fields."""
        if not self.direct:
            fields = {k: v for k, v in event.items() if k not in ("timestamp", "level", "logger", "message")}
            self._log.info(event["message"], extra=fields)
            return
        line = orjson.dumps(event, default=str) + b"\n"
        self._pending.append(line)
        self._pending_bytes += len(line)
        if self._pending_bytes > MAX_PENDING_BYTES:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data, self._pending, self._pending_bytes = b"".join(self._pending), [], 0
        stream = self._stream or sys.stdout.buffer
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # stdout closed: nothing sensible left to do with the line
            pass
