"""``agent.logs``: one JSON object per line, ids from contextvars, rate limiting, file output."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config import LoggingConfig
from agent.logs import (
    MAX_FIELD_CHARS,
    JsonFormatter,
    LineHandler,
    RateLimitFilter,
    TextFormatter,
    request_id_var,
    rfc3339,
    setup_logging,
    trace_id_var,
)

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
FORGED = 'x\r\n{"forged": 1}\n{"level": "CRITICAL", "message": "forged"}'


class Capture:
    """A private logger -> LineHandler(JsonFormatter) -> StringIO, not touching the root logger."""

    def __init__(self, name: str, formatter: logging.Formatter | None = None) -> None:
        self.stream = io.StringIO()
        self.handler = LineHandler(self.stream)
        self.handler.setFormatter(formatter or JsonFormatter())
        self.logger = logging.getLogger(f"{name}.{uuid.uuid4().hex[:8]}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.handler)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        text = self.text
        assert text == "" or text.endswith("\n"), repr(text[-50:])
        return text.split("\n")[:-1] if text else []

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines():
            assert "\r" not in line
            obj = json.loads(line)
            assert isinstance(obj, dict)
            out.append(obj)
        return out

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        for f in self.logger.filters[:]:
            self.logger.removeFilter(f)
        self.handler.close()


@pytest.fixture
def capture() -> Iterator[Capture]:
    cap = Capture("test.logs")
    yield cap
    cap.close()


# --- JsonFormatter ---------------------------------------------------------------------------


def test_one_json_object_per_line_with_fixed_fields(capture: Capture) -> None:
    before = datetime.now(UTC)
    capture.logger.info("hello %s", "world", extra={"check": "database", "latency_ms": 1.5, "ok": True, "n": None})
    capture.logger.warning("second")
    after = datetime.now(UTC)
    first, second = capture.records()
    assert list(first)[:4] == ["timestamp", "level", "logger", "message"]
    assert first["level"] == "INFO" and second["level"] == "WARNING"
    assert first["logger"] == capture.logger.name
    assert first["message"] == "hello world"
    assert first["check"] == "database"
    assert first["latency_ms"] == 1.5
    assert first["ok"] is True
    assert first["n"] is None
    assert RFC3339_UTC.match(first["timestamp"]), first["timestamp"]
    when = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1)
    assert "request_id" not in first and "trace_id" not in first
    # nothing of the LogRecord plumbing leaks into the event
    for noise in ("args", "msg", "levelno", "pathname", "lineno", "exc_info", "stack_info", "taskName", "thread"):
        assert noise not in first


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_700_000_000.1239) == "2023-11-14T22:13:20.123Z"
    assert rfc3339(1_700_000_000.9999) == "2023-11-14T22:13:20.999Z"


def test_request_and_trace_ids_come_from_the_contextvars(capture: Capture) -> None:
    rid_token = request_id_var.set("req-123")
    tid_token = trace_id_var.set("4bf92f3577b34da6a3ce929d0e0e4736")
    try:
        capture.logger.info("inside a request")
    finally:
        request_id_var.reset(rid_token)
        trace_id_var.reset(tid_token)
    capture.logger.info("outside")
    inside, outside = capture.records()
    assert inside["request_id"] == "req-123"
    assert inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "request_id" not in outside and "trace_id" not in outside


async def test_contextvars_are_per_task(capture: Capture) -> None:
    import asyncio

    async def handle(rid: str) -> None:
        request_id_var.set(rid)
        await asyncio.sleep(0)
        capture.logger.info("handled", extra={"expected": rid})

    await asyncio.gather(*(handle(f"r{i}") for i in range(20)))
    records = capture.records()
    assert len(records) == 20
    assert all(r["request_id"] == r["expected"] for r in records)


def test_explicit_extra_ids_win_over_contextvars(capture: Capture) -> None:
    token = request_id_var.set("from-context")
    try:
        capture.logger.info("x", extra={"request_id": "from-extra"})
    finally:
        request_id_var.reset(token)
    assert capture.records()[0]["request_id"] == "from-extra"


def test_crlf_in_message_and_extras_cannot_forge_a_line(capture: Capture) -> None:
    capture.logger.info(FORGED, extra={"user_agent": FORGED, "path": "/a\r\nb", "headers": {"x": FORGED}})
    capture.logger.info("%s", FORGED)
    lines = capture.lines()
    assert len(lines) == 2, capture.text
    records = capture.records()
    assert records[0]["message"] == FORGED
    assert records[0]["user_agent"] == FORGED
    assert records[0]["path"] == "/a\r\nb"
    assert records[0]["headers"] == {"x": FORGED}
    assert records[1]["message"] == FORGED
    assert "forged" not in {k for r in records for k in r}
    assert all(r["level"] == "INFO" for r in records)


def test_exception_is_a_field_on_the_same_line(capture: Capture) -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        capture.logger.exception("request failed", extra={"error_id": "e-1"})
    (line,) = capture.lines()
    (record,) = capture.records()
    assert record["message"] == "request failed"
    assert record["level"] == "ERROR"
    assert record["error_id"] == "e-1"
    assert "Traceback" in record["exception"]
    assert "ValueError: boom" in record["exception"]
    assert "\n" not in line


def test_huge_fields_are_clipped(capture: Capture) -> None:
    try:
        raise RuntimeError("E" * 100_000)
    except RuntimeError:
        capture.logger.error("M" * 100_000, exc_info=True, extra={"user_agent": "U" * 100_000, "small": "s"})
    (line,) = capture.lines()
    (record,) = capture.records()
    for key in ("message", "user_agent", "exception"):
        assert len(record[key]) <= MAX_FIELD_CHARS + 1, key
        assert record[key].endswith("…"), key
    assert record["message"].startswith("M" * 100)
    assert record["small"] == "s"
    assert len(line.encode()) < 16 * 1024  # below containerd's line split


def test_non_json_extras_are_rendered_as_strings(capture: Capture) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    capture.logger.info("x", extra={"when": when, "where": Path("/tmp/x"), "ids": (1, 2), "obj": object()})
    (record,) = capture.records()
    assert record["when"].startswith("2026-01-02T03:04:05")
    assert record["where"] == "/tmp/x"
    assert record["ids"] == [1, 2]
    assert record["obj"].startswith("<object object")


def test_line_handler_writes_each_record_in_one_call() -> None:
    class Recorder(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, s: str) -> int:
            self.writes.append(s)
            return super().write(s)

    stream = Recorder()
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.logs.writes.{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        logger.warning(FORGED, extra={"big": "z" * 5000})
        logger.info("two")
    finally:
        logger.removeHandler(handler)
    assert len(stream.writes) == 2
    for chunk in stream.writes:
        assert chunk.endswith("\n") and chunk.count("\n") == 1
        json.loads(chunk)


def test_text_formatter_is_one_human_line(capture: Capture) -> None:
    capture.handler.setFormatter(TextFormatter())
    capture.logger.warning("check status changed", extra={"check": "database", "from": "pass", "to": "fail"})
    (line,) = capture.lines()
    assert " WARNING " in line
    assert "check status changed" in line
    assert 'check="database"' in line and 'to="fail"' in line


def test_text_formatter_cannot_be_forged(capture: Capture) -> None:
    capture.handler.setFormatter(TextFormatter())
    capture.logger.info(FORGED)
    assert len(capture.lines()) == 1
    assert "\r" not in capture.text


# --- RateLimitFilter -------------------------------------------------------------------------


def _reconnect_warning(logger: logging.Logger) -> None:
    try:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    except ConnectionRefusedError:
        logger.warning("Failed to restore the pool connection %r", "conn-1", exc_info=True)


def test_rate_limit_burst_emits_one_record_without_traceback(capture: Capture) -> None:
    capture.logger.addFilter(RateLimitFilter(prefix=capture.logger.name, period_s=60))
    for _ in range(1000):
        _reconnect_warning(capture.logger)
    records = capture.records()
    assert len(records) == 1
    assert records[0]["level"] == "WARNING"
    assert records[0]["message"].startswith("Failed to restore the pool connection")
    assert "exception" not in records[0]
    assert "Traceback" not in capture.text
    assert "suppressed_since_last" not in records[0]


def test_rate_limit_reports_suppressed_count_after_the_period(capture: Capture) -> None:
    period = 0.5
    capture.logger.addFilter(RateLimitFilter(prefix=capture.logger.name, period_s=period))
    started = time.monotonic()
    for _ in range(1000):
        _reconnect_warning(capture.logger)
    burst_s = time.monotonic() - started
    assert burst_s < period, f"burst took {burst_s:.3f}s, longer than the period; the test cannot judge"
    time.sleep(period + 0.1)
    _reconnect_warning(capture.logger)
    records = capture.records()
    assert len(records) == 2
    assert records[1]["suppressed_since_last"] == 999
    assert "exception" not in records[1]
    # the count restarts after it was reported
    time.sleep(period + 0.1)
    _reconnect_warning(capture.logger)
    assert "suppressed_since_last" not in capture.records()[2]


def test_rate_limit_is_per_message(capture: Capture) -> None:
    capture.logger.addFilter(RateLimitFilter(prefix=capture.logger.name, period_s=60))
    for i in range(10):
        capture.logger.warning("first kind")
        capture.logger.warning("second kind")
        capture.logger.warning("value %d", i)  # same template: one key
    assert [r["message"] for r in capture.records()] == ["first kind", "second kind", "value 0"]


# --- setup_logging ---------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging reconfigures process-wide state; put everything back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    asyncpg_log = logging.getLogger("asyncpg")
    asyncpg_filters = asyncpg_log.filters[:]
    access = logging.getLogger("aiohttp.access")
    access_disabled = access.disabled
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    asyncpg_log.filters[:] = asyncpg_filters
    access.disabled = access_disabled
    logging.captureWarnings(False)


def test_setup_logging_writes_the_same_json_lines_to_the_file(tmp_path: Path, restore_logging: None) -> None:
    stream = io.StringIO()
    log_file = tmp_path / "agent.log"
    setup_logging(LoggingConfig(file=str(log_file)), stream=stream)
    log = logging.getLogger("agent.test")
    token = request_id_var.set("rid-file")
    try:
        log.info("with a file", extra={"check": "disk"})
        log.warning(FORGED)
        log.debug("below the level")
    finally:
        request_id_var.reset(token)
    logging.getLogger().handlers[-1].flush()
    stdout_lines = stream.getvalue().splitlines()
    file_lines = log_file.read_text(encoding="utf-8").split("\n")
    assert file_lines[-1] == ""
    assert file_lines[:-1] == stdout_lines
    assert len(stdout_lines) == 2
    first, second = (json.loads(line) for line in stdout_lines)
    assert first["message"] == "with a file" and first["check"] == "disk" and first["request_id"] == "rid-file"
    assert second["message"] == FORGED


def test_setup_logging_is_idempotent_and_honours_level(restore_logging: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging(LoggingConfig(level="WARNING"), stream=first)
    setup_logging(LoggingConfig(level="WARNING"), stream=second)
    logging.getLogger("agent.test").info("dropped")
    logging.getLogger("agent.test").warning("kept")
    assert first.getvalue() == ""
    assert [json.loads(line)["message"] for line in second.getvalue().splitlines()] == ["kept"]
    assert sum(isinstance(f, RateLimitFilter) for h in logging.getLogger().handlers for f in h.filters) == 1


def test_setup_logging_rate_limits_asyncpg(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging(LoggingConfig(), stream=stream)
    for _ in range(50):
        _reconnect_warning(logging.getLogger("asyncpg"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "exception" not in json.loads(lines[0])


def test_setup_logging_rate_limits_asyncpg_pool_warnings(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging(LoggingConfig(), stream=stream)
    for _ in range(50):
        _reconnect_warning(logging.getLogger("asyncpg.pool"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
