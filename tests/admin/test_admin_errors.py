"""Errors the admin listener makes (SPEC §5, STYLE rule 7): the one vocabulary of ``agent.rules.errors``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.admin.http import HttpError, Request, Response
from agent.logs import record_fields
from tests.admin.admin_apps import UUID4, admin_app, make_config

SECRET = "password=hunter2 in a bug"


async def bug(request: Request) -> Response:
    raise RuntimeError(SECRET)


async def unavailable(request: Request) -> Response:
    raise HttpError(503, headers={"Retry-After": "3", "X-Internal": "no"})


async def short_and_stout(request: Request) -> Response:
    raise HttpError(418)


ROUTES = {"/bug": bug, "/unavailable": unavailable, "/teapot": short_and_stout}


async def test_an_unexpected_exception_is_a_500_with_only_an_error_id(
    admin_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await admin_client(admin_app(make_config(), ROUTES))
    caplog.set_level(logging.INFO, logger="agent")
    response = await client.get("/bug", headers={"X-Request-ID": "req-1"})
    text = await response.text()
    assert response.status == 500
    assert response.headers["Content-Type"] == "application/json"
    body = await response.json()
    assert set(body) == {"error_id", "error_code", "message", "timestamp", "request_id"}
    assert body["error_code"] == "INTERNAL_ERROR" and body["request_id"] == "req-1"
    assert UUID4.fullmatch(body["error_id"]) and response.headers["X-Error-ID"] == body["error_id"]
    assert SECRET not in text and "RuntimeError" not in text
    assert response.headers.getall("X-Frame-Options") == ["DENY"]  # the hooks ran on the error too

    (record,) = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert record.levelno == logging.ERROR and record.name == "agent.errors"
    line = record_fields(record)
    assert line["error_id"] == body["error_id"] and line["error_code"] == "INTERNAL_ERROR"
    assert line["request_id"] == "req-1" and line["status"] == 500
    assert "Traceback" in line["exception"] and f"RuntimeError: {SECRET}" in line["exception"]


@pytest.mark.parametrize(
    ("path", "status", "code", "level"),
    [
        ("/unavailable", 503, "SERVICE_UNAVAILABLE", logging.ERROR),
        ("/teapot", 418, "CLIENT_ERROR", logging.INFO),
        ("/missing", 404, "NOT_FOUND", logging.INFO),
    ],
)
async def test_http_exceptions_are_coded_by_status(
    admin_client: Any, caplog: pytest.LogCaptureFixture, path: str, status: int, code: str, level: int
) -> None:
    client = await admin_client(admin_app(make_config(), ROUTES))
    caplog.set_level(logging.INFO, logger="agent")
    response = await client.get(path)
    body = await response.json()
    assert (response.status, body["error_code"]) == (status, code)
    (record,) = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert record.levelno == level and record.exc_info is None
    assert record.error_id == body["error_id"]  # type: ignore[attr-defined]


async def test_only_meaningful_headers_of_an_http_exception_are_kept(admin_client: Any) -> None:
    client = await admin_client(admin_app(make_config(), ROUTES))
    response = await client.get("/unavailable")
    assert response.headers["Retry-After"] == "3" and "X-Internal" not in response.headers
    not_allowed = await client.post("/health")
    assert not_allowed.status == 405 and (await not_allowed.json())["error_code"] == "METHOD_NOT_ALLOWED"
    assert set(not_allowed.headers["Allow"].split(",")) == {"GET", "HEAD"}
