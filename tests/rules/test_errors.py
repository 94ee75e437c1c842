"""agent.rules.errors: one vocabulary, the error document."""

from __future__ import annotations

import re

import orjson

from agent.rules.errors import ERROR_CODES, code_for_status, error_document, error_json, message_for

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_every_code_is_unique_and_upper_snake() -> None:
    codes = [e.code for e in ERROR_CODES]
    assert len(codes) == len(set(codes))
    assert all(re.fullmatch(r"[A-Z][A-Z_]+", c) for c in codes)


def test_the_agents_own_502_and_an_apps_502_read_the_same() -> None:
    assert code_for_status(502) == "UPSTREAM_UNAVAILABLE"
    assert code_for_status(504) == "UPSTREAM_TIMEOUT"
    assert code_for_status(404) == "NOT_FOUND" and code_for_status(422) == "VALIDATION_ERROR"
    assert code_for_status(431) == "HEADER_TOO_LARGE"


def test_unlisted_statuses_fall_back_by_class() -> None:
    assert code_for_status(418) == "CLIENT_ERROR"
    assert code_for_status(599) == "UPSTREAM_ERROR"


def test_document_has_the_spec_keys() -> None:
    doc = error_document("OVERLOADED", request_id="r1")
    assert list(doc) == ["error_id", "error_code", "message", "timestamp", "request_id"]
    assert UUID4.match(doc["error_id"]) and doc["message"] == message_for("OVERLOADED")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["timestamp"])
    error_id, body = error_json("BAD_REQUEST", request_id=None, message="custom", error_id="e-1")
    assert error_id == "e-1" and orjson.loads(body)["message"] == "custom"


def test_unknown_code_message_is_the_code() -> None:
    assert message_for("SOMETHING_NEW") == "SOMETHING_NEW"
