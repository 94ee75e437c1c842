"""The Helm chart, rendered by Helm's own engine and checked against the Kubernetes schemas."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from agent import __version__
from agent.config import CHECK_TYPES, SECTIONS
from agent.config.schema import TracingConfig
from agent.tracing import resource_attributes
from tests.support.chart import (
    CHART,
    KUBERNETES_VERSION,
    agent_container,
    agent_toml,
    app_container,
    assert_valid_for,
    by_kind,
    containers_by_name,
    manifests,
    one,
    pod_spec,
    port_number,
    render,
    with_images,
)
from tests.support.console_script import check_config

DB_SECRET = {"database": {"existingSecret": "tracker-db", "secretKey": "url"}}
VARIATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "native-sidecar": {"nativeSidecar": True},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
    "pod-monitor": {"serviceMonitor": {"enabled": True, "kind": "PodMonitor"}},
    "pdb-and-database": {"podDisruptionBudget": {"enabled": True}, **DB_SECRET},
    "admin-disabled": {"agent": {"config": {"admin": {"enabled": False}}}, "serviceMonitor": {"enabled": True}},
    "everything": {
        "nativeSidecar": True,
        "replicaCount": 3,
        "serviceMonitor": {"enabled": True},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "25%"},
        "networkPolicy": {"enabled": True, "metricsNamespaces": ["monitoring"]},
        "app": {"env": [{"name": "LOG_LEVEL", "value": "info"}], "resources": {"requests": {"cpu": "100m"}}},
        "adminToken": {"existingSecret": "tracker-admin", "secretKey": "admin-token"},
        **DB_SECRET,
    },
}
# The Prometheus operator's kinds are CRDs: no schema in kubernetes-validate, checked by hand below.


# --- Helm's own checks ------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIATIONS)
def test_helm_lint_reports_no_errors_or_warnings(name: str):
    report = helm.lint(CHART, with_images(VARIATIONS[name]), strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 2 = warning, 3 = error


def test_chart_versions_match_the_agent():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["agent"]["image"] == {"repository": "", "tag": "", "pullPolicy": "IfNotPresent"}
    assert agent_container(manifests())["image"] == f"registry.example.com/platform/sidecar-agent:{__version__}"


@pytest.mark.parametrize("image", ["app", "agent"])
def test_both_images_are_required(image: str):
    """No default image that cannot be pulled: the install fails at once, saying what to set."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values[image]["image"]["repository"] == ""
    with pytest.raises(helm.HelmRenderError, match=rf"{image}\.image\.repository is required") as caught:
        render({image: {"image": {"repository": ""}}})
    if image == "agent":  # how to get one: the same two commands as the README's
        assert f"docker build -t REGISTRY/sidecar-agent:{__version__} . && docker push" in str(caught.value)
        assert "podman build --format docker" in str(caught.value)


# --- every manifest is valid Kubernetes --------------------------------------------------


@pytest.mark.parametrize("name", VARIATIONS)
def test_every_manifest_validates_against_kubernetes_schemas(name: str):
    docs = manifests(VARIATIONS[name])
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "ServiceAccount", "Pod"}
    assert_valid_for(docs, KUBERNETES_VERSION)


def test_the_schema_validation_is_live():
    """A canary: the same call rejects a broken Deployment, so the test above can fail."""
    deployment = copy.deepcopy(one(manifests(), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["restartPolicy"] = "Always"  # only init containers
    deployment["spec"]["template"]["spec"]["containers"][1]["livenessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- wiring with default values ----------------------------------------------------------


def test_service_targets_the_agent_main_port():
    docs = manifests()
    service = one(docs, "Service")
    deployment = one(docs, "Deployment")
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert port_number(agent_container(docs), "http") == 8000
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()
    # The app's port is never named, so nothing can target it by name.
    assert all("name" not in p for p in app_container(docs)["ports"])


def test_agent_probes_point_at_the_health_endpoints_with_sensible_timings():
    agent = agent_container(manifests())
    startup, readiness, liveness = agent["startupProbe"], agent["readinessProbe"], agent["livenessProbe"]
    assert startup["httpGet"] == {"path": "/health/startup", "port": "http"}
    assert readiness["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert liveness["httpGet"] == {"path": "/health/live", "port": "http"}
    # A slow database gets minutes before the kubelet gives up on the start.
    assert startup["failureThreshold"] * startup["periodSeconds"] >= 120
    assert readiness["periodSeconds"] == 5
    # Liveness reacts slower than readiness: a restart is the last resort.
    assert liveness["failureThreshold"] * liveness["periodSeconds"] > readiness["failureThreshold"] * readiness["periodSeconds"]
    assert liveness["failureThreshold"] > readiness["failureThreshold"]


def test_app_container_has_no_probes_by_default_and_can_get_them():
    app = app_container(manifests())
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(app)
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    app = app_container(manifests({"app": {"livenessProbe": probe}}))
    assert app["livenessProbe"] == probe


def test_agent_is_a_regular_container_by_default():
    spec = pod_spec(manifests())
    assert set(containers_by_name(spec)) == {"app", "agent"}
    assert "initContainers" not in spec
    assert "restartPolicy" not in containers_by_name(spec)["agent"]


def test_agent_config_is_mounted_where_the_image_looks():
    docs = manifests()
    agent = agent_container(docs)
    env = {e["name"]: e.get("value") for e in agent["env"]}
    assert env["AGENT_CONFIG"] == "/etc/sidecar-agent/agent.toml"
    mount = next(m for m in agent["volumeMounts"] if m["name"] == "agent-config")
    assert mount == {"name": "agent-config", "mountPath": "/etc/sidecar-agent", "readOnly": True}
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == "agent-config")
    assert volume["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]


def test_security_contexts():
    spec = pod_spec(manifests())
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        # A read-only root still needs a writable /tmp for most runtimes.
        assert {"name": f"{container['name']}-tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    agent = containers_by_name(spec)["agent"]
    assert agent["securityContext"]["runAsUser"] == 10001  # the image's USER


def test_shutdown_budget():
    docs = manifests()
    spec = pod_spec(docs)
    pre_stop = app_container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    effective = tomllib.loads(agent_toml(docs))
    drain, shutdown = effective["server"]["drain_delay_s"], effective["server"]["shutdown_timeout_s"]
    assert pre_stop >= drain, "the app must keep answering while the agent drains"
    assert spec["terminationGracePeriodSeconds"] > pre_stop + drain + shutdown


def test_scrape_annotations_point_at_admin_metrics():
    docs = manifests()
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9464"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert port_number(agent_container(docs), "admin") == 9464
    off = one(manifests({"metrics": {"scrapeAnnotations": False}}), "Deployment")
    assert not any(k.startswith("prometheus.io/") for k in off["spec"]["template"]["metadata"]["annotations"])
    assert by_kind(docs, "ServiceMonitor") == [] and by_kind(docs, "PodDisruptionBudget") == []


def test_config_change_rolls_the_pods():
    def checksum(values: dict[str, Any]) -> str:
        annotations = one(manifests(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/agent-config"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"agent": {"config": {"health": {"public_details": "none"}}}})


# --- variations ---------------------------------------------------------------------------


def test_native_sidecar_mode():
    docs = manifests({"nativeSidecar": True})
    spec = pod_spec(docs)
    assert set(containers_by_name(spec)) == {"app"}
    init = containers_by_name(spec, "initContainers")
    assert set(init) == {"agent"}
    assert init["agent"]["restartPolicy"] == "Always"
    assert app_container(docs)["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    # The sidecar's startupProbe gates the app's start; /health/startup waits for the app's
    # own check, so it would deadlock. Readiness still waits for every critical check.
    assert init["agent"]["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert init["agent"]["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "http"


def test_prestop_can_be_turned_off():
    app = app_container(manifests({"app": {"preStopSleepSeconds": 0}}))
    assert "lifecycle" not in app


def test_service_monitor():
    docs = manifests(VARIATIONS["service-monitor"])
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "admin" and endpoint["path"] == "/metrics"
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    admin = next(p for p in service["spec"]["ports"] if p["name"] == "admin")
    assert admin["port"] == 9464 and admin["targetPort"] == "admin"


def test_pod_monitor_leaves_the_service_alone():
    docs = manifests(VARIATIONS["pod-monitor"])
    monitor = one(docs, "PodMonitor")
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "admin" and endpoint["path"] == "/metrics"
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert [p["name"] for p in one(docs, "Service")["spec"]["ports"]] == ["http"]


def test_metrics_follow_the_agent_when_the_admin_listener_is_off():
    docs = manifests(VARIATIONS["admin-disabled"])
    assert [p["name"] for p in agent_container(docs)["ports"]] == ["http"]
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint == {**endpoint, "port": "http", "path": "/metrics"}
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8000"


def test_pod_disruption_budget():
    docs = manifests(VARIATIONS["pdb-and-database"])
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    pdb = one(manifests(VARIATIONS["everything"]), "PodDisruptionBudget")
    assert pdb["spec"] == {**pdb["spec"], "maxUnavailable": "25%"} and "minAvailable" not in pdb["spec"]


def test_database_dsn_comes_from_the_existing_secret():
    docs = manifests(DB_SECRET)
    ref = {"secretKeyRef": {"name": "tracker-db", "key": "url"}}
    for container in (agent_container(docs), app_container(docs)):
        assert {"name": "DATABASE_URL", "valueFrom": ref} in container["env"]
    assert "tracker-db" not in agent_toml(docs)
    app = app_container(manifests({"database": {**DB_SECRET["database"], "appEnvName": ""}}))
    assert "env" not in app


# --- the rendered agent.toml is what the agent accepts ------------------------------------


@pytest.mark.parametrize("name", VARIATIONS)
def test_rendered_agent_toml_passes_check_config(name: str, tmp_path: Path):
    docs = manifests(VARIATIONS[name])
    agent = agent_container(docs)
    env = {"AGENT_ADMIN_TOKEN": "not-a-real-token"}
    if any(e["name"] == "DATABASE_URL" for e in agent["env"]):
        env["DATABASE_URL"] = "postgresql://tracker:pw@db.internal:5432/tracker"
    effective = check_config(agent_toml(docs), tmp_path, env)
    assert effective["server"]["listen"] == f"0.0.0.0:{port_number(agent, 'http')}"
    assert effective["upstream"]["url"] == "http://127.0.0.1:8080"
    assert ("database" in effective["checks"]) == ("DATABASE_URL" in env)
    if effective["admin"]["enabled"]:
        assert effective["admin"]["listen"] == f"0.0.0.0:{port_number(agent, 'admin')}"


def test_toml_rendering_keeps_types(tmp_path: Path):
    """Helm turns every YAML number into a float; the chart writes whole numbers as integers."""
    config = {
        "server": {"drain_delay_s": 7.5, "shutdown_timeout_s": 20},
        "proxy": {"max_body_bytes": 1048576, "trusted_proxies": ["10.0.0.0/8", "fd00::/8"]},
        "health": {"failure_threshold": 3, "max_loop_lag_s": 0.25, "public_details": "full"},
        "security_headers": {"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "", "hsts": "always"},
        "metrics": {"routes": ["/api/v1/plans/{id}"]},
        "request_id": {"pattern": '^[A-Za-z0-9"\\\\<>&-]{1,64}$'},
        "checks": {
            "cache": {"type": "tcp", "host": "127.0.0.1", "port": 6379, "critical": False},
            "memory": {"type": "memory", "critical": False, "warn_used_ratio": 0.8},
            "disk": {"enabled": False},
        },
    }
    docs = manifests({"agent": {"config": config}, "terminationGracePeriodSeconds": 60})
    effective = check_config(agent_toml(docs), tmp_path)
    assert effective["server"]["drain_delay_s"] == 7.5
    assert effective["proxy"]["max_body_bytes"] == 1048576
    assert effective["proxy"]["trusted_proxies"] == ["10.0.0.0/8", "fd00::/8"]
    assert effective["health"]["failure_threshold"] == 3
    assert effective["health"]["max_loop_lag_s"] == 0.25
    assert effective["security_headers"]["X-Frame-Options"] == "SAMEORIGIN"
    assert effective["security_headers"]["Content-Security-Policy"] == ""  # removed, as a file says it
    assert effective["request_id"]["pattern"] == config["request_id"]["pattern"]
    assert effective["checks"]["cache"]["port"] == 6379
    assert set(effective["checks"]) == {"upstream", "cache", "memory", "disk"}
    assert effective["checks"]["disk"] == {"type": "disk", "enabled": False}


# --- bad values fail at install time ------------------------------------------------------

SCHEMA_ERRORS = {
    "replicas not a number": {"replicaCount": "three"},
    "typo in a top-level key": {"nativeSidecars": True},
    "unknown agent config section": {"agent": {"config": {"sever": {"drain_delay_s": 1}}}},
    "bad check type": {"agent": {"config": {"checks": {"x": {"type": "redis"}}}}},
    "bad detail level": {"agent": {"config": {"health": {"public_details": "all"}}}},
    "negative drain": {"agent": {"config": {"server": {"drain_delay_s": -1}}}},
    "liveness successThreshold": {"agent": {"probes": {"liveness": {"successThreshold": 2}}}},
    "port out of range": {"agent": {"ports": {"http": 70000}}},
    "fractional preStop": {"app": {"preStopSleepSeconds": 2.5}},
    "monitor kind": {"serviceMonitor": {"enabled": True, "kind": "Probe"}},
}

TEMPLATE_ERRORS = {
    "grace period too short": ({"terminationGracePeriodSeconds": 30}, "terminationGracePeriodSeconds (30) must be greater"),
    "grace vs longer drain": (
        {"agent": {"config": {"server": {"drain_delay_s": 20}}}},
        "terminationGracePeriodSeconds (45) must be greater",
    ),
    "listen set by hand": ({"agent": {"config": {"server": {"listen": "0.0.0.0:9000"}}}}, "set agent.ports.http instead"),
    "env hides a checked key": (
        {"agent": {"env": [{"name": "AGENT_SERVER_DRAIN_DELAY_S", "value": "60"}]}},
        "AGENT_SERVER_DRAIN_DELAY_S would hide",
    ),
    "token in a ConfigMap": ({"agent": {"config": {"admin": {"token": "s3cret"}}}}, "admin.token would be stored in a ConfigMap"),
    "token_env beside the chart's token": (
        {"agent": {"config": {"admin": {"token_env": "MY_TOKEN"}}}},
        "admin.token_env would be ignored",
    ),
    "token in agent.env": (
        {"agent": {"env": [{"name": "AGENT_ADMIN_TOKEN", "value": "s3cret"}]}},
        "AGENT_ADMIN_TOKEN is set by the chart from adminToken: set adminToken.existingSecret",
    ),
    "dsn in a ConfigMap": (
        {"agent": {"config": {"checks": {"database": {"type": "postgres", "dsn": "postgresql://u:p@h/d"}}}}},
        "checks.database.dsn would be stored in a ConfigMap",
    ),
    "database check without a secret": (
        {"agent": {"config": {"checks": {"database": {"type": "postgres"}}}}},
        "has no DSN: set database.existingSecret",
    ),
}


@pytest.mark.parametrize("name", SCHEMA_ERRORS)
def test_values_schema_rejects(name: str):
    with pytest.raises(helm.HelmValuesError):
        render(SCHEMA_ERRORS[name])


@pytest.mark.parametrize("name", TEMPLATE_ERRORS)
def test_templates_refuse(name: str):
    values, message = TEMPLATE_ERRORS[name]
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)) as caught:
        render(values)
    # The refusal never echoes the secret it refused.
    assert "s3cret" not in str(caught.value) and "u:p@h" not in str(caught.value)


def test_schema_knows_the_agent_config_sections():
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["agent"]["properties"]["config"]
    assert set(config["properties"]) == {*SECTIONS, "checks"}
    check_type = config["properties"]["checks"]["additionalProperties"]["properties"]["type"]
    assert set(check_type["enum"]) == set(CHECK_TYPES)


def test_notes_say_how_to_check_it_works():
    notes = render()["sidecar-agent/templates/NOTES.txt"]
    assert "kubectl -n prod rollout status deployment/demo-sidecar-agent" in notes
    assert "/health/ready" in notes and "helm test -n prod demo" in notes
    assert "WARNING: app.image.repository is registry.example.com/platform/tracker-api" in notes
    assert "WARNING: agent.image.repository is registry.example.com/platform/sidecar-agent" in notes
    images = {"repository": "ghcr.io/acme/tracker", "tag": "1.4.2"}
    configured = render({"app": {"image": images}, "agent": {"image": {"repository": "ghcr.io/acme/sidecar-agent"}}})
    assert "WARNING" not in configured["sidecar-agent/templates/NOTES.txt"]


# --- the pod's identity on the agent's traces ----------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_agent_knows_its_pod_and_namespace_from_the_downward_api(native: bool):
    agent = agent_container(manifests({"nativeSidecar": native}))
    env = {e["name"]: e for e in agent["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    # What the kubelet would set, read the way the agent reads it for its traces' resource. The
    # agent takes these two itself, so the chart sets no OTEL_RESOURCE_ATTRIBUTES for them.
    attributes = resource_attributes(TracingConfig(), {"POD_NAME": "demo-sidecar-agent-7d9f-x2k", "POD_NAMESPACE": "prod"})
    assert attributes["k8s.pod.name"] == "demo-sidecar-agent-7d9f-x2k"
    assert attributes["k8s.namespace.name"] == "prod"
    assert "OTEL_RESOURCE_ATTRIBUTES" not in env
