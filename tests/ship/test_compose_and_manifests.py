"""docker-compose.yml and the plain Kubernetes manifests: valid, wired, and in step with the chart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from agent import __version__
from agent.config import load_config
from tests.support import REPO_ROOT
from tests.support.chart import KUBERNETES_VERSION, agent_toml, containers_by_name, manifests, one
from tests.support.console_script import check_config

COMPOSE = REPO_ROOT / "docker-compose.yml"
PLAIN = REPO_ROOT / "deploy" / "kubernetes" / "tracker.yaml"
DSN = "postgresql://tracker:pw@db.internal:5432/tracker"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_has_the_seed_layout(compose: dict[str, Any]):
    services = compose["services"]
    assert set(services) == {"postgres", "api", "agent"}
    health = services["postgres"]["healthcheck"]
    assert "pg_isready" in " ".join(health["test"])
    agent = services["agent"]
    assert agent["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "api" in agent["depends_on"]
    assert agent["build"] == "." and (REPO_ROOT / "Dockerfile").is_file()
    assert agent["image"] == f"sidecar-agent:{__version__}"
    # Clients reach the API only through the agent.
    assert "ports" not in services["api"]
    assert "8000:8000" in agent["ports"]
    assert all(p.startswith("127.0.0.1:") for p in agent["ports"] if p.endswith(":9464"))


def test_compose_agent_environment_is_a_valid_config(compose: dict[str, Any]):
    services = compose["services"]
    env = {k: str(v) for k, v in services["agent"]["environment"].items()}
    # The image's baked config is the built-in defaults; the environment does the rest.
    config = load_config(REPO_ROOT / "deploy" / "docker" / "agent.toml", env)
    upstream = urlsplit(config.upstream.url)
    assert upstream.hostname == "api"
    assert f"{upstream.port}" in " ".join(services["api"]["command"])
    database = next(c for c in config.checks if c.name == "database")
    assert urlsplit(database.settings.dsn.reveal()).hostname == "postgres"  # type: ignore[union-attr]
    grace = int(re.fullmatch(r"(\d+)s", services["agent"]["stop_grace_period"]).group(1))  # type: ignore[union-attr]
    assert grace > config.server.drain_delay_s + config.server.shutdown_timeout_s


def test_compose_down_is_quick_by_reading(compose: dict[str, Any]):
    """tests/container/test_compose.py measures it; here, what makes it quick."""
    services = compose["services"]
    # The stand-in API has no SIGTERM handler: as PID 1 it would ignore SIGTERM until the SIGKILL.
    assert services["api"]["init"] is True
    # down stops the agent first (it depends on the others): its drain delay is most of the time.
    assert float(services["agent"]["environment"]["AGENT_SERVER_DRAIN_DELAY_S"]) <= 1


def test_compose_hardens_the_agent(compose: dict[str, Any]):
    agent = compose["services"]["agent"]
    assert agent["read_only"] is True
    assert agent["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in agent["security_opt"]


# --- plain manifests -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(PLAIN.read_text()) if d]


def test_plain_manifests_validate(plain: list[dict[str, Any]]):
    assert {d["kind"] for d in plain} == {"ConfigMap", "Deployment", "Service"}
    for doc in plain:
        assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_plain_manifests_match_the_chart_defaults(plain: list[dict[str, Any]], tmp_path: Path):
    chart = manifests({"database": {"existingSecret": "tracker-db"}})
    env = {"DATABASE_URL": DSN}
    assert check_config(agent_toml(plain), tmp_path, env) == check_config(agent_toml(chart), tmp_path, env)

    def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
        spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
        return spec

    plain_pod, chart_pod = pod(plain), pod(chart)
    assert plain_pod["terminationGracePeriodSeconds"] == chart_pod["terminationGracePeriodSeconds"]
    plain_agent, chart_agent = containers_by_name(plain_pod)["agent"], containers_by_name(chart_pod)["agent"]
    for key in ("startupProbe", "livenessProbe", "ports", "resources", "volumeMounts"):
        assert _without_defaults(plain_agent[key]) == _without_defaults(chart_agent[key]), key
    assert {**plain_agent["readinessProbe"], "successThreshold": 1} == chart_agent["readinessProbe"]
    assert plain_agent["securityContext"] == chart_agent["securityContext"]
    # The admin token from a Secret, as the chart's (which generates it; here it is made by hand).
    plain_token = next(e for e in plain_agent["env"] if e["name"] == "AGENT_ADMIN_TOKEN")
    chart_token = next(e for e in chart_agent["env"] if e["name"] == "AGENT_ADMIN_TOKEN")
    assert plain_token["valueFrom"]["secretKeyRef"] == {"name": "tracker-admin-token", "key": "token"}
    assert plain_token["valueFrom"]["secretKeyRef"]["key"] == chart_token["valueFrom"]["secretKeyRef"]["key"]
    for name in ("POD_NAME", "POD_NAMESPACE"):  # the downward API, for the traces' resource
        [plain_env] = [e for e in plain_agent["env"] if e["name"] == name]
        assert plain_env in chart_agent["env"]
    plain_app, chart_app = containers_by_name(plain_pod)["app"], containers_by_name(chart_pod)["app"]
    assert plain_app["lifecycle"] == chart_app["lifecycle"]
    assert plain_app["securityContext"] == chart_app["securityContext"]
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(plain_app)
    annotations = one(plain, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    chart_annotations = one(chart, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in chart_annotations.items() if k.startswith("prometheus.io/")} == annotations
    assert _without_defaults(one(plain, "Service")["spec"]["ports"]) == _without_defaults(one(chart, "Service")["spec"]["ports"])


def _without_defaults(value: Any) -> Any:
    """Drop ``protocol: TCP`` (the API default) so hand-written and rendered ports compare."""
    if isinstance(value, list):
        return [_without_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_defaults(v) for k, v in value.items() if (k, v) != ("protocol", "TCP")}
    return value
