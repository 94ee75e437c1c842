"""A real Prometheus scrapes the real agent's admin port every second while the real PostgreSQL
is stopped and started again; the test asks Prometheus' HTTP API what it saw."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import fast_checks
from tests.support.prometheus import PrometheusServer, prometheus_binary
from tests.support.promql import MONITORING, dashboard_exprs, rule_exprs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus_binary() is None, reason="prometheus missing (Debian package prometheus; scripts/test.sh installs it)"
    ),
]

UP = 'up{job="agent"}'
DATABASE_UP = 'agent_check_up{job="agent", check="database"}'
REQUESTS = 'sum(agent_http_requests_total{job="agent"})'
TRAFFIC = 20


@pytest.fixture
def prometheus(tmp_path) -> Iterator[Callable[[list[str]], PrometheusServer]]:
    servers: list[PrometheusServer] = []

    def start(targets: list[str]) -> PrometheusServer:
        server = PrometheusServer(tmp_path / f"prometheus{len(servers)}", targets, rule_files=[MONITORING / "alerts.yml"])
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def with_variables(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$job", ".+").replace("$instance", ".+")


def test_prometheus_scrapes_the_agent_through_a_database_outage(agent_factory, running_pg, healthy_upstream, prometheus):
    agent = agent_factory(fast_checks(healthy_upstream.url, running_pg.dsn))
    agent.wait_for("/health/ready", 200, timeout=10)
    prom = prometheus([f"127.0.0.1:{agent.admin_port}"])

    prom.wait_for(UP, lambda v: v == 1, timeout=15)
    target = prom.api("targets")["activeTargets"][0]
    assert target["health"] == "up" and target["lastError"] == "", target
    prom.wait_for(DATABASE_UP, lambda v: v == 1, timeout=10)
    assert prom.value('agent_build_info{job="agent"}') == 1
    assert prom.value('agent_ready{job="agent"}') == 1

    running_pg.stop("fast")
    try:
        prom.wait_for(DATABASE_UP, lambda v: v == 0, timeout=15)
        assert prom.value('agent_check_status{job="agent", check="database", status="fail"}') == 1
        prom.wait_for('agent_ready{job="agent"}', lambda v: v == 0, timeout=5)
        assert prom.value(UP) == 1  # scraping is unaffected by the outage
    finally:
        running_pg.restart()
    prom.wait_for(DATABASE_UP, lambda v: v == 1, timeout=15)
    # What Prometheus stored: up, down, up again (each run of equal samples collapsed to one).
    samples = [int(float(v)) for _, v in prom.query(f"{DATABASE_UP}[5m]")[0]["values"]]
    assert [v for i, v in enumerate(samples) if i == 0 or v != samples[i - 1]] == [1, 0, 1], samples

    # Every dashboard query and alert expression is valid PromQL for this Prometheus, and the rules load.
    for expr in dashboard_exprs() + rule_exprs():
        prom.query(with_variables(expr))
    rules = {rule["name"] for group in prom.api("rules")["groups"] for rule in group["rules"]}
    assert rules == {"AgentCheckDown", "AgentHighErrorRatio", "AgentHighLatencyP99", "AgentCertificateExpiresSoon"}

    # The request counter grows with traffic through the main listener.
    for i in range(TRAFFIC):
        assert agent.get(f"/echo/orders/{i}").status == 200
    prom.wait_for(REQUESTS, lambda v: v is not None and v >= TRAFFIC, timeout=5)
    before = prom.value(REQUESTS)
    for i in range(TRAFFIC):
        assert agent.get(f"/echo/orders/{i}").status == 200
    prom.wait_for(REQUESTS, lambda v: v is not None and v >= before + TRAFFIC, timeout=10)
    assert prom.value('sum(agent_http_requests_total{job="agent", route="/echo/orders/{id}", status="200"})') == 2 * TRAFFIC
