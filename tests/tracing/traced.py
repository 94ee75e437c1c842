"""What the tracing tests share: a traced agent's config, W3C ids, requests with bodies, and the
agent's span counters read from its own ``/metrics``."""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import AgentProcess, Response, proxy_config


def traced_config(upstream_url: str, endpoint: str, tracing: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """:func:`proxy_config` with ``[tracing]`` on, exporting to ``endpoint``; a short export queue bound
    is not set here: each test says what it relies on."""
    return proxy_config(upstream_url, tracing={"enabled": True, "endpoint": endpoint, **(tracing or {})}, **sections)


def trace_id() -> str:
    return secrets.token_hex(16)


def parent_id() -> str:
    return secrets.token_hex(8)


def traceparent(trace: str, parent: str, flags: str) -> str:
    return f"00-{trace}-{parent}-{flags}"


def split_traceparent(value: str) -> tuple[str, str, str, str]:
    version, trace, parent, flags = value.split("-")
    return version, trace, parent, flags


def send(
    agent: AgentProcess,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    admin: bool = False,
) -> Response:
    """One request on its own connection (to the admin listener when ``admin``), with a body when given."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", agent.admin_port if admin else agent.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.headers, data, time.perf_counter() - started)
    finally:
        conn.close()


def raw_status(agent: AgentProcess, data: bytes, timeout_s: float = 5.0) -> int:
    """Send ``data`` as is on a new connection; the status of the answer (read until the agent closes)."""
    with socket.create_connection(("127.0.0.1", agent.port), timeout=timeout_s) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return int(received[9:12])


def seen_by_app(response: Response, name: str) -> list[str]:
    """The values of header ``name`` the test upstream's ``/echo`` says it received."""
    return [value for key, value in response.json()["headers"] if key.lower() == name.lower()]


def span_counters(agent: AgentProcess) -> dict[str, float]:
    """``exported``, ``queue_full``, ``export_failed`` and ``queue`` from the agent's admin ``/metrics``."""
    text = agent.get("/metrics", admin=True).body.decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "agent_tracing_spans_exported_total":
                found["exported"] = sample.value
            elif sample.name == "agent_tracing_spans_dropped_total":
                found[sample.labels["reason"]] = sample.value
            elif sample.name == "agent_tracing_queue_spans":
                found["queue"] = sample.value
    assert set(found) == {"exported", "queue_full", "export_failed", "queue"}, text
    return found


def spans_made(agent: AgentProcess) -> float:
    """Every span the agent made so far: exported, dropped, failed or still queued (a batch being
    exported right now is in none of them)."""
    counters = span_counters(agent)
    return counters["exported"] + counters["queue_full"] + counters["export_failed"] + counters["queue"]


def log_warnings(agent: AgentProcess) -> list[dict[str, Any]]:
    return [record for record in agent.log_records() if record.get("level") in ("WARNING", "ERROR", "CRITICAL")]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
