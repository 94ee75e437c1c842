"""The agent's own errors, exactly as the SPEC §5 table: status, error_code, JSON body with
error_id / request_id / timestamp, security headers, and one log line carrying the same ids."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.support.agent import AgentProcess, proxy_config
from tests.support.rawhttp import chunked, get, new_request_id, raw_exchange, request
from tests.support.reports import wait_for_log
from tests.support.responses import RFC3339, SECURITY_HEADERS, UUID4
from tests.support.upstream import UpstreamProcess

MAX_IN_FLIGHT = 2


@pytest.fixture(scope="module")
def overload_agent(upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    agent = AgentProcess(
        tmp_path_factory.mktemp("overload"), proxy_config(upstream.url, proxy={"max_in_flight": MAX_IN_FLIGHT})
    ).start()
    yield agent
    agent.stop()


def assert_agent_error(agent: AgentProcess, response, status: int, code: str, request_id: str | None = None) -> dict:
    """The SPEC §5 error shape, and the log line with the same error_id and request_id."""
    assert response.status == status, response.body[:300]
    assert response.header("Content-Type") == "application/json"
    body = response.json()
    assert set(body) >= {"error_id", "error_code", "message", "timestamp", "request_id"}
    assert body["error_code"] == code
    assert UUID4.match(body["error_id"])
    assert RFC3339.match(body["timestamp"])
    assert body["request_id"] == response.header("X-Request-ID")
    if request_id is not None:
        assert body["request_id"] == request_id
    assert response.header("X-Error-ID") == body["error_id"]
    missing = [h for h in SECURITY_HEADERS if h not in response.names()]
    assert not missing, f"{status} lacks {missing}"
    lines = wait_for_log(agent, lambda r: r.get("error_id") == body["error_id"])
    assert lines, f"no log line with error_id {body['error_id']}"
    assert all(line.get("request_id") == body["request_id"] for line in lines)
    return body


async def test_502_when_the_upstream_is_down(dead_upstream_agent):
    rid = new_request_id()
    response = await get(dead_upstream_agent.port, "/api/v1/plans", headers=[("X-Request-ID", rid)])
    body = assert_agent_error(dead_upstream_agent, response, 502, "UPSTREAM_UNAVAILABLE", rid)
    assert "127.0.0.1" not in body["message"] and "Errno" not in body["message"]
    # Every log line written for the request carries its request_id and trace_id.
    # The access line is written in a batch (every 50 ms): wait for it, then read every line.
    wait_for_log(dead_upstream_agent, lambda r: r.get("request_id") == rid and r["message"] == "request completed")
    lines = wait_for_log(dead_upstream_agent, lambda r: r.get("request_id") == rid)
    assert {line["message"] for line in lines} >= {"request failed", "request completed"}
    assert all(line.get("trace_id") for line in lines)


async def test_502_for_post_and_head_too(dead_upstream_agent):
    post = await get(dead_upstream_agent.port, "/x", method="POST", body=b'{"a": 1}')
    assert_agent_error(dead_upstream_agent, post, 502, "UPSTREAM_UNAVAILABLE")
    head = await get(dead_upstream_agent.port, "/x", method="HEAD")
    assert head.status == 502 and head.body == b""
    assert head.header("X-Error-ID")


async def test_health_still_answers_with_the_upstream_down(dead_upstream_agent):
    response = await get(dead_upstream_agent.port, "/health/live")
    assert response.status == 200


async def test_504_when_the_upstream_is_slower_than_read_timeout(main_agent):
    rid = new_request_id()
    started = time.monotonic()
    response = await get(main_agent.port, "/slow?delay_s=4", headers=[("X-Request-ID", rid)], timeout=6)
    elapsed = time.monotonic() - started
    assert_agent_error(main_agent, response, 504, "UPSTREAM_TIMEOUT", rid)
    assert 1.4 <= elapsed < 2.6, elapsed  # upstream.read_timeout_s = 1.5 (swept every 0.25 s)


async def test_413_with_content_length_over_the_limit(main_agent, upstream):
    before = upstream.requests_served()
    rid = new_request_id()
    data = request("POST", "/upload", headers=[("X-Request-ID", rid), ("Content-Length", str(1024 * 1024 + 1))])
    ex = await raw_exchange(main_agent.port, data, timeout_s=3)
    assert upstream.requests_served() == before  # refused before contacting the app
    assert ex.closed
    assert_agent_error(main_agent, ex.response(), 413, "PAYLOAD_TOO_LARGE")


async def test_content_length_over_the_limit_refused_before_the_upstream(main_agent, upstream):
    # Whatever the status, the app never sees it and the connection closes.
    before = upstream.requests_served()
    ex = await raw_exchange(
        main_agent.port, request("POST", "/upload", headers=[("Content-Length", str(50 * 1024 * 1024))]), timeout_s=3
    )
    assert ex.closed
    assert ex.response().status in (400, 413)
    assert upstream.requests_served() == before


async def test_413_for_a_chunked_body_over_the_limit(main_agent, upstream):
    upstream.reset_events()
    rid = new_request_id()
    data = request(
        "POST",
        "/upload",
        headers=[("X-Request-ID", rid), ("Transfer-Encoding", "chunked")],
        body=chunked(b"z" * (1024 * 1024 + 100)),
    )
    ex = await raw_exchange(main_agent.port, data, timeout_s=5)
    assert ex.closed
    assert_agent_error(main_agent, ex.response(), 413, "PAYLOAD_TOO_LARGE", rid)
    await asyncio.sleep(0.3)
    assert upstream.events().get("upload_complete", 0) == 0  # the app never saw a complete body


async def test_413_for_a_body_longer_than_announced_is_impossible_and_exact_limit_passes(main_agent):
    body = b"y" * (1024 * 1024)  # exactly max_body_bytes
    response = await get(main_agent.port, "/upload", method="POST", body=body, timeout=5)
    assert response.status == 200 and response.json()["bytes"] == len(body)
    response = await get(
        main_agent.port, "/upload", method="POST", headers=[("Transfer-Encoding", "chunked")], body=chunked(body), timeout=5
    )
    assert response.status == 200 and response.json()["bytes"] == len(body)


async def test_503_overloaded_with_retry_after(overload_agent, upstream):
    async def one(i: int):
        return await get(overload_agent.port, f"/hold?delay_s=1&i={i}", timeout=5)

    responses = await asyncio.gather(*(one(i) for i in range(6)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == MAX_IN_FLIGHT, statuses
    assert statuses.count(503) == 6 - MAX_IN_FLIGHT, statuses
    for response in responses:
        if response.status == 503:
            assert_agent_error(overload_agent, response, 503, "OVERLOADED")
            assert response.header("Retry-After") and int(response.header("Retry-After")) >= 1
    # Health probes are never refused for overload.
    again = await asyncio.gather(one(99), get(overload_agent.port, "/health/ready"))
    assert again[1].status in (200, 503) and again[1].header("Retry-After") is None


async def test_overload_clears_when_requests_finish(overload_agent):
    response = await get(overload_agent.port, "/echo")
    assert response.status == 200


async def test_400_malformed_request_is_json_with_error_id_and_security_headers(main_agent, upstream):
    before = upstream.requests_served()
    ex = await raw_exchange(main_agent.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", timeout_s=3)
    assert ex.closed
    assert_agent_error(main_agent, ex.response(), 400, "BAD_REQUEST")
    assert upstream.requests_served() == before


async def test_400_never_echoes_a_valid_looking_client_request_id_it_could_not_parse(main_agent):
    ex = await raw_exchange(
        main_agent.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc\r\nX: a\x00b\r\n\r\n", timeout_s=3
    )
    response = ex.response()
    assert response.status == 400
    assert UUID4.match(response.header("X-Request-ID") or "")


async def test_error_responses_logged_once_per_error_id(main_agent):
    counts: dict[str, int] = {}
    for record in main_agent.log_records():
        if record.get("level") in ("WARNING", "ERROR") and record.get("error_id"):
            counts[record["error_id"]] = counts.get(record["error_id"], 0) + 1
    assert counts and max(counts.values()) == 1, {k: v for k, v in counts.items() if v > 1}
