"""A real agent's scrape, checked by promtool; dashboard and alert rules use only names it exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from agent.app import create_monitor
from agent.config import build_config
from agent.config.schema import ListenerTlsConfig
from agent.metrics import create_registry
from agent.metrics.exposition import render
from agent.metrics.tls import TlsCollector
from agent.tls import TlsListener
from tests.conftest import fast_checks
from tests.support import REPO_ROOT
from tests.support.agent import AgentProcess
from tests.support.promql import MONITORING, dashboard_exprs, metric_names, rule_exprs

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing (Debian package prometheus; scripts/test.sh installs it)"
)

# SPEC §6, as sample names of a scrape (every check type configured, traffic served).
SPEC_SAMPLES = {
    "agent_http_requests_total",
    "agent_http_request_duration_seconds_bucket",
    "agent_http_request_duration_seconds_sum",
    "agent_http_request_duration_seconds_count",
    "agent_http_requests_in_flight",
    "agent_upstream_errors_total",
    "agent_check_up",
    "agent_check_status",
    "agent_check_duration_seconds",
    "agent_check_last_success_timestamp_seconds",
    "agent_check_runs_total",
    "agent_postgres_connections_used_ratio",
    "agent_postgres_in_recovery",
    "agent_disk_free_ratio",
    "agent_memory_used_ratio",
    "agent_ready",
    "agent_draining",
    "agent_event_loop_lag_seconds",
    "agent_build_info",
    "agent_start_time_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
}


@pytest.fixture(scope="module")
def agent(tmp_path_factory, pg, upstream) -> Iterator[AgentProcess]:
    """One agent with every check type (postgres, http, disk, memory) that has served some traffic."""
    upstream.set_mode("healthy")
    pg.resume()
    if not pg.is_running():
        pg.restart()
    config = fast_checks(upstream.url, pg.dsn)
    config["checks"]["disk"] = {"enabled": True, "critical": False}
    config["checks"]["memory"] = {"type": "memory", "critical": False, "warn_used_ratio": 0.99, "fail_used_ratio": 0.999}
    config["metrics"] = {"routes": ["/api/v1/plans/{id}"]}
    process = AgentProcess(tmp_path_factory.mktemp("agent"), config).start()
    try:
        process.wait_for("/health/ready", 200, timeout=10)
        for path in ("/echo/users/42", "/echo/users/43", "/api/v1/plans/abc", "/status/503", "/health/live"):
            process.get(path)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def scrape(agent) -> str:
    response = agent.get("/metrics", admin=True)
    assert response.status == 200
    return response.body.decode()


def sample_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture(scope="module")
def http_scrape() -> str:
    """The same registry code in-process, after the calls the main listener makes per request."""
    config = build_config({"checks": {"upstream": {"enabled": False}}, "metrics": {"routes": ["/api/v1/plans/{id}"]}}, {}, "test")
    registry, http = create_registry(config, create_monitor(config))
    for method, path, status in (("GET", "/api/v1/plans/7", 200), ("POST", "/api/v1/plans", 201), ("BREW", "/x/1", 502)):
        http.start()
        http.observe(method, path, status, 0.012)
    http.upstream_error("connect")
    return render(registry, "", "", [])[0].decode()


@pytest.fixture(scope="module")
def tls_scrape(tmp_path_factory) -> str:
    """The TLS families, from a listener serving a real certificate."""
    trustme = pytest.importorskip("trustme")
    directory = tmp_path_factory.mktemp("tls")
    certificate = trustme.CA().issue_cert("localhost")
    certificate.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    registry = CollectorRegistry(auto_describe=True)
    path = str(directory / "server.pem")
    registry.register(TlsCollector([TlsListener("main", ListenerTlsConfig(cert_file=path, key_file=path))]))
    return render(registry, "", "", [])[0].decode()


@pytest.fixture(scope="module")
def exported(scrape, http_scrape, tls_scrape) -> set[str]:
    """Sample names the agent exports: a real process's scrape, plus every HTTP and TLS family with samples."""
    return sample_names(scrape) | sample_names(http_scrape) | sample_names(tls_scrape)


def promtool_lint(text: str) -> str:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    lint = (result.stdout + result.stderr).decode().strip()
    assert result.returncode == 0 and lint == "", lint
    return lint


@needs_promtool
def test_promtool_check_metrics_passes_on_a_real_scrape(scrape):
    promtool_lint(scrape)


@needs_promtool
def test_promtool_check_metrics_passes_on_the_http_families(http_scrape):
    assert "agent_http_request_duration_seconds_bucket" in http_scrape
    promtool_lint(http_scrape)


def test_openmetrics_scrape_parses(agent):
    response = agent.get("/metrics", admin=True, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    families = {family.name for family in parse_openmetrics(response.body.decode())}
    assert {"agent_http_requests", "agent_check_up", "agent_build_info"} <= families


def test_every_spec_metric_is_exported(exported):
    assert SPEC_SAMPLES - exported == set()


def test_real_process_counts_main_listener_traffic_with_bounded_labels(scrape):
    series = [s for family in text_string_to_metric_families(scrape) for s in family.samples if s.name.startswith("agent_http")]
    routes = {s.labels["route"] for s in series if "route" in s.labels}
    proxied = {"/echo/users/{id}", "/api/v1/plans/{id}", "/status/{id}"}
    assert proxied <= routes <= proxied | {"/health", "/health/live", "/health/ready", "/health/startup"}
    statuses = {s.labels["status"] for s in series if "status" in s.labels}
    assert {"200", "404", "503"} == statuses


def test_process_and_postgres_values_are_real(agent, scrape):
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(scrape) for s in f.samples
    }
    assert values[("agent_check_up", (("check", "database"),))] == 1
    assert 0 < values[("agent_postgres_connections_used_ratio", (("check", "database"),))] < 1
    assert values[("agent_postgres_in_recovery", (("check", "database"),))] == 0
    assert values[("process_resident_memory_bytes", ())] > 1e6
    assert values[("agent_ready", ())] == 1


def test_dashboard_has_the_required_panels():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "Request rate by route",
        "Error ratio (5xx)",
        "Latency p50 by route",
        "Latency p99 by route",
        "Check status",
        "Upstream errors by reason",
    } <= titles


def test_dashboard_queries_use_only_exported_names(exported):
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used - exported == set(), f"dashboard uses names the agent does not export: {used - exported}"


def test_alert_rules_use_only_exported_names(exported):
    assert len(rule_exprs()) == 4
    used = set().union(*(metric_names(expr) for expr in rule_exprs()))
    assert used and used - exported == set(), f"alert rules use names the agent does not export: {used - exported}"


@needs_promtool
def test_promtool_checks_and_unit_tests_the_alert_rules():
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run([PROMTOOL, *args], cwd=MONITORING, capture_output=True, timeout=60)
        assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_readme_lists_every_exported_agent_metric(exported):
    doc = (Path(REPO_ROOT) / "README.md").read_text()
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in exported if name.startswith("agent_")}
    families = {name for name in families if not name.endswith("_created")}
    missing = {name for name in families if f"`{name}" not in doc}
    assert missing == set()


def test_real_process_serves_metrics_on_the_main_listener_when_admin_is_disabled(agent_factory, healthy_upstream):
    config = fast_checks(healthy_upstream.url)
    config["admin"] = {"enabled": False}
    config["metrics"] = {"path": "/_agent/metrics"}
    process = agent_factory(config)
    response = process.get("/_agent/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "agent_build_info{" in response.body.decode()
    openmetrics = process.get("/_agent/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert openmetrics.body.endswith(b"# EOF\n")
