"""The admin listener's access-log line: the event of ``agent.rules.access``, the main listener's keys."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.admin.http import Request, Response
from agent.logs import record_fields
from agent.rules.access import LOGGER_NAME, MESSAGE, access_event
from tests.admin.admin_apps import admin_app, make_config

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# The keys every line of the main listener carries (``aborted`` only on an aborted exchange).
MAIN_KEYS = set(
    access_event(
        request_id="r",
        trace_id="t",
        method="GET",
        path="/",
        status=200,
        duration_s=0.0,
        bytes_sent=0,
        client_ip=None,
        user_agent="",
        upstream_s=None,
    )
)


async def hello(request: Request) -> Response:
    return Response(200, b"hello")


async def bug(request: Request) -> Response:
    raise RuntimeError("bug")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The lines as the log renders them (``agent.logs.record_fields``)."""
    return [record_fields(r) for r in caplog.records if r.name == LOGGER_NAME]


@pytest.fixture
async def client(admin_client: Any, caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO, logger="agent")
    return await admin_client(admin_app(make_config(), {"/hello": hello, "/bug": bug}))


async def test_the_line_has_exactly_the_main_listeners_keys(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    response = await client.get("/hello?x=1", headers={"X-Request-ID": "req-7", "traceparent": TRACEPARENT, "User-Agent": "ua/1"})
    assert response.status == 200
    (line,) = access_lines(caplog)
    assert set(line) == MAIN_KEYS
    assert line["logger"] == LOGGER_NAME and line["message"] == MESSAGE and line["level"] == "INFO"
    assert line["request_id"] == "req-7" and line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (line["method"], line["path"], line["status"], line["bytes_sent"]) == ("GET", "/hello", 200, 5)
    assert line["user_agent"] == "ua/1" and line["client_ip"] == "127.0.0.1"
    assert line["upstream_ms"] is None and line["duration_ms"] >= 0


async def test_errors_are_logged_with_their_final_status(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert (await client.get("/bug")).status == 500
    assert (await client.get("/missing")).status == 404
    lines = access_lines(caplog)
    assert [(line["path"], line["status"]) for line in lines] == [("/bug", 500), ("/missing", 404)]
    assert all(set(line) == MAIN_KEYS for line in lines)


async def test_probe_and_scrape_paths_are_skipped(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert (await client.get(path)).status in (200, 503)
    assert access_lines(caplog) == []
    await client.get("/health")  # the detailed body is not in logging.skip_paths
    assert [line["path"] for line in access_lines(caplog)] == ["/health"]
