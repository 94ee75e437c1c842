"""HttpMetrics: labels, method folding, in-flight, upstream errors, and registries that never share."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from agent.metrics.http import DURATION_BUCKETS_S, KNOWN_METHODS, UPSTREAM_ERROR_REASONS, HttpMetrics
from agent.metrics.routes import RouteFolder


def make(max_routes: int = 200) -> tuple[CollectorRegistry, HttpMetrics]:
    registry = CollectorRegistry()
    return registry, HttpMetrics(registry, RouteFolder(["/api/v1/plans/{id}"], max_routes=max_routes, fixed_routes=["/health"]))


def count(registry, method, route, status):
    return registry.get_sample_value("agent_http_requests_total", {"method": method, "route": route, "status": status})


def test_observe_counts_by_method_route_and_exact_status():
    registry, http = make()
    for status in (200, 200, 404, 503, 299):
        http.start()
        http.observe("GET", "/api/v1/plans/abc?x=1", status, 0.02)
    assert count(registry, "GET", "/api/v1/plans/{id}", "200") == 2
    assert count(registry, "GET", "/api/v1/plans/{id}", "404") == 1
    assert count(registry, "GET", "/api/v1/plans/{id}", "503") == 1
    assert count(registry, "GET", "/api/v1/plans/{id}", "299") == 1
    labels = {"method": "GET", "route": "/api/v1/plans/{id}"}
    assert registry.get_sample_value("agent_http_request_duration_seconds_count", labels) == 5
    assert registry.get_sample_value("agent_http_request_duration_seconds_sum", labels) == pytest.approx(0.1)
    assert registry.get_sample_value("agent_http_request_duration_seconds_bucket", {**labels, "le": "0.025"}) == 5
    assert registry.get_sample_value("agent_http_request_duration_seconds_bucket", {**labels, "le": "0.01"}) == 0
    assert registry.get_sample_value("agent_http_requests_in_flight") == 0


def test_buckets_are_the_otel_default_set():
    assert DURATION_BUCKETS_S == (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


@pytest.mark.parametrize("method", KNOWN_METHODS)
def test_known_methods_kept(method):
    registry, http = make()
    http.start()
    http.observe(method, "/health", 200, 0.001)
    assert count(registry, method, "/health", "200") == 1


@pytest.mark.parametrize("method", ["BREW", "get", "PROPFIND", "X" * 200, "OTHER"])
def test_unknown_methods_fold_to_other(method):
    registry, http = make()
    http.start()
    http.observe(method, "/health", 200, 0.001)
    assert count(registry, "OTHER", "/health", "200") == 1


def test_in_flight_tracks_start_and_observe():
    registry, http = make()
    for _ in range(3):
        http.start()
    assert registry.get_sample_value("agent_http_requests_in_flight") == 3
    http.observe("GET", "/x", 200, 0.0)
    assert registry.get_sample_value("agent_http_requests_in_flight") == 2


def test_upstream_errors_exist_from_the_start_and_count():
    registry, http = make()
    for reason in UPSTREAM_ERROR_REASONS:
        assert registry.get_sample_value("agent_upstream_errors_total", {"reason": reason}) == 0
    http.upstream_error("timeout")
    http.upstream_error("timeout")
    http.upstream_error("reset")
    assert registry.get_sample_value("agent_upstream_errors_total", {"reason": "timeout"}) == 2
    assert registry.get_sample_value("agent_upstream_errors_total", {"reason": "reset"}) == 1
    with pytest.raises(ValueError, match="unknown upstream error reason"):
        http.upstream_error("dns")


def test_route_label_bounded_under_a_scan():
    registry, http = make(max_routes=10)
    for i in range(1000):
        http.start()
        http.observe("GET", f"/scan/word{chr(97 + i % 26)}{i}x/admin.php", 404, 0.001)
    routes = {s.labels["route"] for m in registry.collect() if m.name == "agent_http_requests" for s in m.samples}
    assert len(routes - {"other"}) == 10
    assert "other" in routes


def test_two_registries_never_share_series():
    registry_a, http_a = make()
    registry_b, _ = make()
    http_a.start()
    http_a.observe("GET", "/health", 200, 0.001)
    assert count(registry_a, "GET", "/health", "200") == 1
    assert count(registry_b, "GET", "/health", "200") is None


def test_repeated_requests_to_one_route_add_to_one_series():
    """The steady state whose cost ``python -m bench.metrics`` reports as ``observe_us``: a route
    seen before adds to its existing series; nothing new is created per request."""
    registry, http = make()
    for i in range(1000):
        http.start()
        http.observe("GET", f"/api/v1/plans/{i}", 200, 0.01)
    assert count(registry, "GET", "/api/v1/plans/{id}", "200") == 1000
    assert registry.get_sample_value("agent_http_requests_in_flight") == 0
    assert http.routes.routes == frozenset()  # the template matched: no route was added
    requests = [s for m in registry.collect() if m.name == "agent_http_requests" for s in m.samples if s.name.endswith("_total")]
    assert len(requests) == 1
