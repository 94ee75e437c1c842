"""Request ids and trace context on the admin listener: the rule of ``agent.rules.ids`` (SPEC §5)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from agent.admin.http import Request, Response
from agent.logs import request_id_var, trace_id_var
from tests.admin.admin_apps import UUID4, admin_app, make_config

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def seen_ids(request: Request) -> Response:
    """What a handler (and every log line written meanwhile) sees."""
    body = orjson.dumps({"request_id": request_id_var.get(), "trace_id": trace_id_var.get()})
    return Response(200, body, content_type="application/json")


async def digits_client(admin_client: Any) -> Any:
    config = make_config(request_id={"header": "X-Correlation-ID", "pattern": r"^\d{1,10}$"})
    return await admin_client(admin_app(config, {"/ids": seen_ids}))


async def test_a_custom_pattern_keeps_ascii_digits(admin_client: Any) -> None:
    client = await digits_client(admin_client)
    response = await client.get("/ids", headers={"X-Correlation-ID": "123"})
    assert response.headers.getall("X-Correlation-ID") == ["123"]
    assert (await response.json())["request_id"] == "123"


@pytest.mark.parametrize("incoming", ["١٢٣", "１２３", "12a", "", "12345678901"])
async def test_a_custom_pattern_replaces_other_digits_and_misfits(admin_client: Any, incoming: str) -> None:
    """``\\d`` means ``[0-9]``, as on the main listener: Arabic-Indic or full-width digits are not an id."""
    client = await digits_client(admin_client)
    response = await client.get("/ids", headers={"X-Correlation-ID": incoming})
    (shown,) = response.headers.getall("X-Correlation-ID")
    assert UUID4.fullmatch(shown) and shown != incoming
    assert (await response.json())["request_id"] == shown


async def test_the_id_reaches_error_bodies_and_log_lines(admin_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await digits_client(admin_client)
    caplog.set_level(logging.INFO, logger="agent")
    response = await client.get("/missing", headers={"X-Correlation-ID": "42", "traceparent": TRACEPARENT})
    assert response.status == 404
    body = await response.json()
    assert body["request_id"] == "42" == response.headers["X-Correlation-ID"]
    (failed,) = [r for r in caplog.records if r.getMessage() == "request failed"]
    assert failed.error_id == body["error_id"]  # type: ignore[attr-defined]


async def test_trace_context_is_kept_when_valid_and_made_otherwise(admin_client: Any) -> None:
    client = await admin_client(admin_app(make_config(), {"/ids": seen_ids}))
    kept = await (await client.get("/ids", headers={"traceparent": TRACEPARENT})).json()
    assert kept["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    made = await (await client.get("/ids", headers={"traceparent": TRACEPARENT.replace("00-", "ff-", 1)})).json()
    assert len(made["trace_id"]) == 32 and made["trace_id"] != kept["trace_id"]
    assert request_id_var.get() is None and trace_id_var.get() is None  # nothing leaks out of the request
