"""Logs as events: one JSON object per line (orjson), request and trace ids from contextvars.

Handlers write each record with a single ``write`` of a complete line, so lines are never split
or interleaved, and JSON string escaping means CR/LF from a client can never start a new line.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from contextvars import ContextVar
from typing import IO, Any

import orjson

from agent.config import LoggingConfig
from agent.rules.clock import rfc3339 as rfc3339  # re-exported: older modules import it from here

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
MAX_FIELD_CHARS = 2048  # keep records far below containerd's 16 KiB line split


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "…"
    return value


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event as a flat dict: fixed keys first, then ids, then the record's extras."""
    event: dict[str, Any] = {
        "timestamp": rfc3339(record.created),
        "level": record.levelname,
        "logger": record.name,
        "message": _clip(record.getMessage()),
    }
    request_id = getattr(record, "request_id", None) or request_id_var.get()
    if request_id:
        event["request_id"] = request_id
    trace_id = getattr(record, "trace_id", None) or trace_id_var.get()
    if trace_id:
        event["trace_id"] = trace_id
    for key, value in record.__dict__.items():
        if key not in _RECORD_ATTRS and key not in event:
            event[key] = _clip(value)
    if record.exc_info:
        event["exception"] = _clip(logging.Formatter().formatException(record.exc_info))
    return event


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(record_fields(record), default=str).decode()


class TextFormatter(logging.Formatter):
    """For humans on a terminal: ``time LEVEL logger message key=value ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        event = record_fields(record)
        message = str(event.pop("message")).replace("\r", "\\r").replace("\n", "\\n")
        head = f"{event.pop('timestamp')} {event.pop('level'):<7} {event.pop('logger')}: {message}"
        tail = " ".join(f"{k}={orjson.dumps(v, default=str).decode()}" for k, v in event.items())
        return f"{head} {tail}" if tail else head


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes ``formatted + "\\n"`` in one call, then flushes."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            self.stream.write(line)
            self.stream.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class RateLimitFilter(logging.Filter):
    """For loggers under ``prefix``: one record per (logger, message) per ``period_s``, no traceback.

    asyncpg logs a warning with a traceback on every reconnect attempt while the database is
    down (on ``asyncpg.pool``); this keeps that from flooding the log. Installed on the handlers,
    because a logger's own filters do not apply to records of its child loggers.
    """

    def __init__(self, prefix: str = "asyncpg", period_s: float = 60.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.period_s = period_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != self.prefix and not record.name.startswith(self.prefix + "."):
            return True
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        last, suppressed = self._last.get(key, (-1e18, 0))
        if now - last < self.period_s:
            self._last[key] = (last, suppressed + 1)
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        if suppressed:
            record.suppressed_since_last = suppressed
        record.exc_info = None  # one line, not a traceback per reconnect
        record.exc_text = None
        return True


def setup_logging(config: LoggingConfig, stream: IO[str] | None = None) -> None:
    """Configure the root logger once, at start; idempotent (replaces earlier handlers)."""
    formatter: logging.Formatter = JsonFormatter() if config.format == "json" else TextFormatter()
    handlers: list[logging.Handler] = [LineHandler(stream or sys.stdout)]
    if config.file:
        file_handler = logging.handlers.RotatingFileHandler(
            config.file, maxBytes=config.file_max_bytes, backupCount=config.file_backups, encoding="utf-8"
        )
        handlers.append(file_handler)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    rate_limit = RateLimitFilter("asyncpg")
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(rate_limit)
        root.addHandler(handler)
    root.setLevel(config.level)
    logging.getLogger("aiohttp.access").disabled = True  # the agent writes its own access log
    # The OTLP exporter logs every failed or retried batch; the agent counts lost spans
    # (agent_tracing_spans_dropped_total) and warns once a minute itself (agent.tracing).
    logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
    logging.captureWarnings(True)
