"""agent.proxy.augment: the app's 4xx/5xx JSON bodies made consistent, others left alone."""

from __future__ import annotations

import orjson

from agent.proxy.augment import augment_error_body, is_json

JSON = [(b"Content-Type", b"application/json; charset=utf-8", b"content-type")]


def augment(status: int, body: object, headers=JSON):  # type: ignore[no-untyped-def]
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    out = augment_error_body(status, headers, raw, error_id="e1", request_id="r1")
    return None if out is None else orjson.loads(out)


def test_fastapi_detail_string_becomes_message_and_code() -> None:
    out = augment(404, {"detail": "Plan not found"})
    assert out == {**out, "detail": "Plan not found", "error_code": "NOT_FOUND", "message": "Plan not found"}
    assert out["error_id"] == "e1" and out["request_id"] == "r1" and out["timestamp"].endswith("Z")


def test_fastapi_validation_list_becomes_a_readable_message() -> None:
    out = augment(422, {"detail": [{"loc": ["body", "name"], "msg": "field required", "type": "missing"}]})
    assert out["error_code"] == "VALIDATION_ERROR" and out["message"] == "name: field required"


def test_app_fields_are_kept_and_ids_are_the_agents() -> None:
    out = augment(409, {"error_code": "PLAN_EXISTS", "message": "exists", "error_id": "app", "timestamp": "t"})
    assert out["error_code"] == "PLAN_EXISTS" and out["message"] == "exists"
    assert out["error_id"] == "e1" and out["timestamp"] == "t"


def test_the_same_vocabulary_as_the_agents_own_errors() -> None:
    assert augment(502, {})["error_code"] == "UPSTREAM_UNAVAILABLE"
    assert augment(504, {})["error_code"] == "UPSTREAM_TIMEOUT"
    assert augment(418, {})["error_code"] == "CLIENT_ERROR" and augment(599, {})["error_code"] == "UPSTREAM_ERROR"


def test_not_augmented() -> None:
    assert augment(500, b"<html>") is None
    assert augment(500, [1, 2]) is None
    assert augment(400, {"a": 1}, headers=[(b"Content-Type", b"text/plain", b"content-type")]) is None
    gz = [*JSON, (b"Content-Encoding", b"gzip", b"content-encoding")]
    assert augment(400, {"a": 1}, headers=gz) is None
    assert is_json([(b"Content-Type", b"application/problem+json", b"content-type")])
