"""/metrics in-process: admin listener, content negotiation, gzip, the main-listener fallback and
the request counting on the main listener (through the real proxy to the real test upstream)."""

from __future__ import annotations

import gzip
import uuid
from contextlib import AsyncExitStack

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import build_config
from agent.metrics import HttpMetrics
from tests.support.inprocess import in_process_agent

OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)  # what Prometheus 2.x sends


def make_config(upstream_url: str, **sections):
    table = {
        "upstream": {"url": upstream_url},
        "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
        "metrics": {"routes": ["/api/v1/plans/{id}"]},
    }
    for section, values in sections.items():
        table.setdefault(section, {}).update(values)
    return build_config(table, {}, "test")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(text) for s in family.samples
    }


@pytest.fixture
async def agent(healthy_upstream):
    async with AsyncExitStack() as stack:

        async def make(**sections):
            config = make_config(healthy_upstream.url, **sections)
            running = await stack.enter_async_context(in_process_agent(config))
            made.append(running)
            return running.main, running.admin

        made = []
        make.made = made
        yield make


async def test_admin_metrics_text_format_with_security_headers(agent):
    _, admin = await agent()
    response = await admin.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "X-Request-ID" in response.headers
    text = await response.text()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "agent_build_info",
        "agent_start_time_seconds",
        "agent_ready",
        "agent_draining",
        "agent_event_loop_lag_seconds",
        "agent_http_requests_in_flight",
        "agent_upstream_errors",
        "process_cpu_seconds",
    } <= names


async def test_openmetrics_when_asked(agent):
    _, admin = await agent()
    response = await admin.get("/metrics", headers={"Accept": OPENMETRICS_ACCEPT})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = await response.text()
    assert text.endswith("# EOF\n")
    assert "# TYPE agent_upstream_errors counter" in text


async def test_gzip_when_asked_and_identity_otherwise(agent):
    _, admin = await agent()
    response = await admin.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    assert b"agent_build_info" in gzip.decompress(await response.read())
    plain = await admin.get("/metrics", headers={"Accept-Encoding": "identity"}, auto_decompress=False)
    assert "Content-Encoding" not in plain.headers
    assert b"agent_build_info" in await plain.read()


async def test_name_filter_and_head(agent):
    _, admin = await agent()
    text = await (await admin.get("/metrics", params=[("name[]", "agent_ready"), ("name[]", "agent_draining")])).text()
    assert {family.name for family in text_string_to_metric_families(text)} == {"agent_ready", "agent_draining"}
    head = await admin.head("/metrics")
    assert head.status == 200
    assert await head.read() == b""


async def test_metrics_need_no_admin_token(agent):
    _, admin = await agent(admin={"token": "s3cret-admin-token"})
    assert (await admin.get("/metrics")).status == 200
    assert (await admin.get("/status")).status in (401, 404)  # details are guarded; metrics are not


async def test_main_listener_requests_counted_and_shared_with_admin(agent):
    main, admin = await agent()
    http = agent.made[-1].http_metrics
    assert isinstance(http, HttpMetrics)
    assert (await main.get("/health/live")).status == 200
    plan = str(uuid.uuid4())
    assert (await main.get(f"/api/v1/plans/{plan}?verbose=1")).status == 404  # proxied; the upstream has no such plan
    assert (await main.get("/echo/users/12345/orders")).status == 200
    assert (await main.request("PROPFIND", "/echo")).status == 200  # a WebDAV method llhttp parses
    assert (await main.get("/metrics")).status == 404  # admin enabled: /metrics on main is the upstream's
    await admin.get("/health")  # the admin listener is not counted
    values = samples(await (await admin.get("/metrics")).text())

    def count(method, route, status):
        return values.get(("agent_http_requests_total", frozenset({"method": method, "route": route, "status": status}.items())))

    assert count("GET", "/health/live", "200") == 1
    assert count("GET", "/api/v1/plans/{id}", "404") == 1
    assert count("GET", "/echo/users/{id}/orders", "200") == 1
    assert count("OTHER", "/echo", "200") == 1
    assert count("GET", "/metrics", "404") == 1
    assert not any(name == "agent_http_requests_total" and dict(labels)["route"] == "/health" for name, labels in values)
    assert values[("agent_http_requests_in_flight", frozenset())] == 0
    duration = ("agent_http_request_duration_seconds_count", frozenset({"method": "GET", "route": "/api/v1/plans/{id}"}.items()))
    assert values[duration] == 1


async def test_upstream_down_is_a_502_counted_by_status():
    from tests.support.net import free_port

    config = make_config(f"http://127.0.0.1:{free_port()}")
    async with in_process_agent(config) as running:
        assert (await running.main.get("/anything/42")).status == 502
        values = samples(await (await running.admin.get("/metrics")).text())
    assert (
        values[("agent_http_requests_total", frozenset({"method": "GET", "route": "/anything/{id}", "status": "502"}.items()))]
        == 1
    )


async def test_metrics_move_to_the_main_listener_when_admin_is_disabled(agent):
    main, admin = await agent(admin={"enabled": False}, metrics={"path": "/_agent/metrics"})
    assert admin is None
    response = await main.get("/_agent/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    assert "agent_build_info" in text
    assert (await main.get("/metrics")).status == 404  # not the agent's path any more: proxied
    values = samples(await (await main.get("/_agent/metrics")).text())
    key = ("agent_http_requests_total", frozenset({"method": "GET", "route": "/_agent/metrics", "status": "200"}.items()))
    assert values[key] == 1  # the scrape path is its own fixed route
