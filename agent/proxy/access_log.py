"""The access log of the main listener: one JSON line per request, written in batches.

Lines are rendered like every other log line (``agent.logs.record_fields`` keys) but skip the
``logging`` machinery: they are collected and written once per event-loop iteration with a single
``write`` of whole lines, so a line is never split and the per-request cost stays small. When a
log file is configured, or the level filters INFO out, lines go through ``logging`` instead.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import IO, Any

import orjson

from agent.logs import rfc3339

LOGGER_NAME = "agent.access"


class AccessLog:
    def __init__(self, *, enabled: bool, direct: bool, stream: IO[bytes] | None = None) -> None:
        self.enabled = enabled and logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO)
        self.direct = direct
        self._stream = stream
        self._pending: list[bytes] = []
        self._scheduled = False
        self._log = logging.getLogger(LOGGER_NAME)

    def write(self, fields: dict[str, Any]) -> None:
        if not self.direct:
            message = fields.pop("message")
            self._log.info(message, extra=fields)
            return
        event = {"timestamp": rfc3339(time.time()), "level": "INFO", "logger": LOGGER_NAME, **fields}
        self._pending.append(orjson.dumps(event, default=str) + b"\n")
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        stream = self._stream or sys.stdout.buffer
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # stdout closed: nothing sensible left to do with the line
            pass
