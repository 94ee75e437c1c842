"""The access log of the main listener (SPEC §9): one JSON line per request with the fixed
fields, never split by client-controlled bytes, probes skipped by default."""

from __future__ import annotations

import asyncio

from tests.support.rawhttp import get, new_request_id, raw_exchange
from tests.support.reports import wait_for_log
from tests.support.responses import RFC3339

FIELDS = {
    "timestamp",
    "level",
    "logger",
    "message",
    "method",
    "path",
    "status",
    "duration_ms",
    "bytes_sent",
    "client_ip",
    "user_agent",
    "upstream_ms",
    "request_id",
    "trace_id",
}


def access_lines(agent, request_id: str | None = None):
    return [
        r
        for r in agent.log_records()
        if r.get("message") == "request completed" and (request_id is None or r.get("request_id") == request_id)
    ]


async def test_one_line_per_proxied_request_with_the_fields(main_agent):
    rid = new_request_id()
    response = await get(main_agent.port, "/echo?secret=1", headers=[("X-Request-ID", rid), ("User-Agent", "probe/1.0")])
    (line,) = wait_for_log(main_agent, lambda r: r.get("request_id") == rid and r.get("message") == "request completed")
    assert set(line) >= FIELDS, FIELDS - set(line)
    assert RFC3339.match(line["timestamp"])
    assert line["method"] == "GET" and line["path"] == "/echo" and line["status"] == 200
    assert line["bytes_sent"] == len(response.body)
    assert line["client_ip"] == "127.0.0.1" and line["user_agent"] == "probe/1.0"
    assert isinstance(line["duration_ms"], (int, float)) and isinstance(line["upstream_ms"], (int, float))
    assert len(access_lines(main_agent, rid)) == 1


async def test_concurrent_requests_one_line_each(main_agent):
    ids = [new_request_id() for _ in range(30)]
    await asyncio.gather(*(get(main_agent.port, f"/echo/c{i}", headers=[("X-Request-ID", rid)]) for i, rid in enumerate(ids)))
    wait_for_log(main_agent, lambda r: r.get("request_id") == ids[-1])
    await asyncio.sleep(0.2)
    lines = access_lines(main_agent)
    for rid in ids:
        assert sum(1 for line in lines if line["request_id"] == rid) == 1


async def odd_request(agent, path: bytes, user_agent: bytes) -> tuple[dict, list[bytes]]:
    """Send one request with client-chosen bytes; return its access line and its raw log lines."""
    rid = new_request_id()
    ex = await raw_exchange(
        agent.port,
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: t\r\nX-Request-ID: "
        + rid.encode()
        + b"\r\nUser-Agent: "
        + user_agent
        + b"\r\n\r\n",
        until_responses=1,
        timeout_s=3,
    )
    assert ex.response().status in (200, 404)  # the app may not route odd paths; the agent forwarded it
    wait_for_log(agent, lambda r: r.get("request_id") == rid)
    await asyncio.sleep(0.1)
    raw = [line for line in agent.stdout_path.read_bytes().split(b"\n") if rid.encode() in line]
    records = [r for r in agent.log_records() if r.get("request_id") == rid]  # each line one JSON object
    assert len(raw) == 1 and len(records) == 1, raw
    assert not any("forged" in r for r in agent.log_records())
    return records[0], raw


async def test_odd_user_agent_bytes_never_split_or_forge_a_line(main_agent):
    # LF cannot be sent inside a header value; quotes, braces, backslashes, obs-text can.
    ua = b'x"}, {"forged": 1, "a": "\\ \xe2\x80\xa8 \xc2\x85 \xff\xfe \t end'
    record, _ = await odd_request(main_agent, b"/echo/ua", ua)
    assert record["user_agent"].startswith('x"}, {"forged": 1') and record["user_agent"].endswith("end")


async def test_odd_path_bytes_never_split_or_forge_a_line(main_agent):
    path = b'/echo/%0d%0a"}{"forged":2}\\x'
    record, _ = await odd_request(main_agent, path, b"ua")
    assert record["path"] == path.decode()


async def test_high_bytes_in_the_path_refused(main_agent):
    ex = await raw_exchange(main_agent.port, b"GET /echo/\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", timeout_s=3)
    assert ex.response().status == 400


async def test_health_probes_skipped_by_default_but_health_logged(main_agent):
    ids = {}
    for path in ("/health/live", "/health/ready", "/health/startup", "/health"):
        rid = new_request_id()
        ids[path] = rid
        await get(main_agent.port, path, headers=[("X-Request-ID", rid)])
    wait_for_log(main_agent, lambda r: r.get("request_id") == ids["/health"])
    await asyncio.sleep(0.2)
    for path in ("/health/live", "/health/ready", "/health/startup"):
        assert access_lines(main_agent, ids[path]) == [], path
    (line,) = access_lines(main_agent, ids["/health"])
    assert line["path"] == "/health" and line["upstream_ms"] is None


async def test_agent_errors_are_access_logged_too(dead_upstream_agent):
    rid = new_request_id()
    await get(dead_upstream_agent.port, "/x", headers=[("X-Request-ID", rid)])
    lines = wait_for_log(dead_upstream_agent, lambda r: r.get("request_id") == rid and r.get("message") == "request completed")
    assert len(lines) == 1 and lines[0]["status"] == 502


async def test_malformed_request_logged_once_with_its_error_id(main_agent):
    ex = await raw_exchange(main_agent.port, b"GET /echo HTTP/1.1\r\nHost: t\r\nX: a\x00\r\n\r\n", timeout_s=3)
    body = ex.response().json()
    lines = wait_for_log(main_agent, lambda r: r.get("error_id") == body["error_id"])
    assert len(lines) == 1
    assert lines[0]["request_id"] == body["request_id"] and lines[0]["status"] == 400
