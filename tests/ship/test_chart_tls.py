"""The chart with ``tls.enabled``: HTTPS on the agent's main listener from a kubernetes.io/tls Secret.

Rendered by Helm's own engine, validated against the Kubernetes schemas, and the rendered
agent.toml checked by the agent itself against real certificate files laid out the way the kubelet
writes a Secret volume (``..data`` symlink swap), which is also what lets the agent see a renewal.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import trustme

from agent.config.schema import ListenerTlsConfig
from agent.tls import TlsListener
from tests.support.chart import (
    CHART,
    KUBERNETES_VERSION,
    agent_container,
    agent_toml,
    assert_valid_for,
    manifests,
    one,
    pod_spec,
    port_number,
    render,
    with_images,
)
from tests.support.console_script import check_config

TLS = {"tls": {"enabled": True, "secretName": "tracker-tls"}}
MTLS = {"tls": {"enabled": True, "secretName": "tracker-tls", "clientCaSecretName": "tracker-client-ca"}}
VARIATIONS: dict[str, dict[str, Any]] = {
    "tls": TLS,
    "mtls": MTLS,
    "tls-native-sidecar": {**TLS, "nativeSidecar": True},
    "tls-admin-disabled-service-monitor": {
        **TLS,
        "agent": {"config": {"admin": {"enabled": False}}},
        "serviceMonitor": {"enabled": True},
    },
    "tls-pod-monitor-tls13": {
        **TLS,
        "agent": {"config": {"admin": {"enabled": False}, "server": {"tls": {"min_version": "TLSv1.3"}}}},
        "serviceMonitor": {"enabled": True, "kind": "PodMonitor"},
    },
}


def volume(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(docs)["volumes"] if v["name"] == name)


def mount(container: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in container["volumeMounts"] if m["name"] == name)


def server_tls(docs: list[dict[str, Any]]) -> dict[str, Any]:
    tls: dict[str, Any] = tomllib.loads(agent_toml(docs))["server"]["tls"]
    return tls


# --- Helm's and Kubernetes' checks --------------------------------------------------------


@pytest.mark.parametrize("name", VARIATIONS)
def test_helm_lint_reports_no_errors_or_warnings(name: str):
    report = helm.lint(CHART, with_images(VARIATIONS[name]), strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", VARIATIONS)
def test_every_manifest_validates_against_kubernetes_schemas(name: str):
    docs = manifests(VARIATIONS[name])
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "ServiceAccount", "Pod"}
    assert_valid_for(docs, KUBERNETES_VERSION)


# --- the Secret reaches the agent ---------------------------------------------------------


@pytest.mark.parametrize("name", ["tls", "tls-native-sidecar"])
def test_the_secret_is_a_read_only_directory_mount_and_the_config_points_into_it(name: str):
    docs = manifests(VARIATIONS[name])
    assert volume(docs, "agent-tls")["secret"] == {"secretName": "tracker-tls", "defaultMode": 0o444}
    tls_mount = mount(agent_container(docs), "agent-tls")
    # No subPath: a subPath mount is bound to the file it first saw and never sees the kubelet's
    # ..data swap, so a renewed certificate would never reach the agent.
    assert tls_mount == {"name": "agent-tls", "mountPath": tls_mount["mountPath"], "readOnly": True}
    # Not nested inside the ConfigMap's read-only mount.
    assert not tls_mount["mountPath"].startswith("/etc/sidecar-agent/")
    tls = server_tls(docs)
    # The keys of a kubernetes.io/tls Secret, as cert-manager writes them.
    assert tls == {"cert_file": f"{tls_mount['mountPath']}/tls.crt", "key_file": f"{tls_mount['mountPath']}/tls.key"}
    # Only the agent mounts it.
    for container in pod_spec(docs).get("containers", []):
        if container["name"] != "agent":
            assert all(m["name"] != "agent-tls" for m in container.get("volumeMounts", []))


def test_client_ca_is_its_own_mount_holding_only_ca_crt():
    docs = manifests(MTLS)
    assert volume(docs, "agent-client-ca")["secret"] == {
        "secretName": "tracker-client-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    ca_mount = mount(agent_container(docs), "agent-client-ca")
    assert ca_mount["readOnly"] is True and "subPath" not in ca_mount
    tls = server_tls(docs)
    assert tls["client_ca_file"] == f"{ca_mount['mountPath']}/ca.crt"
    assert tls["client_auth"] == "optional"


def test_without_tls_nothing_changes():
    docs = manifests()
    assert "tls" not in tomllib.loads(agent_toml(docs))["server"]
    assert {v["name"] for v in pod_spec(docs)["volumes"]} == {"agent-config", "agent-tmp", "app-tmp"}
    agent = agent_container(docs)
    assert all("scheme" not in agent[probe]["httpGet"] for probe in ("startupProbe", "readinessProbe", "livenessProbe"))
    assert "appProtocol" not in one(docs, "Service")["spec"]["ports"][0]


# --- everything that talks to the main listener speaks HTTPS -------------------------------


@pytest.mark.parametrize("name", ["tls", "tls-native-sidecar"])
def test_probes_use_https_on_the_https_port(name: str):
    agent = agent_container(manifests(VARIATIONS[name]))
    assert port_number(agent, "https") == 8000
    assert "http" not in {p["name"] for p in agent["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = agent[probe]["httpGet"]
        assert get["scheme"] == "HTTPS" and get["port"] == "https", probe
        assert get["path"].startswith("/health/")


def test_service_port_is_https():
    docs = manifests(TLS)
    [port] = one(docs, "Service")["spec"]["ports"]
    assert port == {"name": "https", "port": 80, "targetPort": "https", "protocol": "TCP", "appProtocol": "https"}


def test_helm_test_pod_and_notes_use_https():
    rendered = render(TLS)
    pod = next(d for d in manifests(TLS) if d["kind"] == "Pod")
    assert "https://demo-sidecar-agent:80/health/ready" in pod["spec"]["containers"][0]["args"]
    notes = rendered["sidecar-agent/templates/NOTES.txt"]
    assert "curl -i -k https://127.0.0.1:8000/health/ready" in notes
    assert "http://127.0.0.1:8000" not in notes
    assert "Secret tracker-tls" in notes
    # The admin listener stays plain HTTP.
    assert 'curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9464/health' in notes


def test_metrics_on_the_tls_main_listener_are_scraped_over_https():
    docs = manifests(VARIATIONS["tls-admin-disabled-service-monitor"])
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "https" and endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https" and annotations["prometheus.io/port"] == "8000"
    [endpoint] = one(manifests(VARIATIONS["tls-pod-monitor-tls13"]), "PodMonitor")["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "https" and endpoint["scheme"] == "https"
    # With the admin listener on, /metrics stays on plain HTTP.
    docs = manifests({**TLS, "serviceMonitor": {"enabled": True}})
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "admin" and "scheme" not in endpoint
    assert "prometheus.io/scheme" not in one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]


# --- the rendered agent.toml is what the agent accepts -------------------------------------


def write_secret_volume(directory: Path, files: dict[str, bytes], generation: str) -> None:
    """A Secret volume as the kubelet's AtomicWriter writes it: the files in a new timestamped
    directory, ``..data`` renamed atomically to point at it, each key a symlink through ``..data``."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = directory / f"..{generation}"
    payload.mkdir()
    for name, data in files.items():
        (payload / name).write_bytes(data)
    staged = directory / "..data_tmp"
    staged.symlink_to(payload.name)
    os.replace(staged, directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")


def tls_secret(ca: trustme.CA, *hosts: str) -> dict[str, bytes]:
    """A kubernetes.io/tls Secret's data, with cert-manager's ca.crt."""
    issued = ca.issue_cert(*hosts)
    return {
        "tls.crt": b"".join(blob.bytes() for blob in issued.cert_chain_pems),
        "tls.key": issued.private_key_pem.bytes(),
        "ca.crt": ca.cert_pem.bytes(),
    }


@pytest.mark.parametrize("name", VARIATIONS)
def test_rendered_agent_toml_passes_check_config(name: str, tmp_path: Path):
    """check-config loads the pair (and the CA) from the rendered paths, each moved under a temp
    root and filled the way the kubelet fills the Secret volumes."""
    docs = manifests(VARIATIONS[name])
    agent = agent_container(docs)
    text = agent_toml(docs)
    ca = trustme.CA()
    root = tmp_path / "root"
    for volume_name in ("agent-tls", "agent-client-ca"):
        if not any(m["name"] == volume_name for m in agent["volumeMounts"]):
            continue
        mount_path = mount(agent, volume_name)["mountPath"]
        write_secret_volume(root / mount_path.lstrip("/"), tls_secret(ca, "demo-sidecar-agent.prod.svc"), "2026_12_01")
        text = text.replace(f'"{mount_path}/', f'"{root}{mount_path}/')
    assert str(root) in text
    effective = check_config(text, tmp_path)
    tls = effective["server"]["tls"]
    assert tls["cert_file"] == f"{root}{mount(agent, 'agent-tls')['mountPath']}/tls.crt"
    assert effective["server"]["listen"] == f"0.0.0.0:{port_number(agent, 'https')}"
    if name == "mtls":
        assert tls["client_auth"] == "optional" and tls["client_ca_file"].endswith("/ca.crt")
    if name == "tls-pod-monitor-tls13":
        assert tls["min_version"] == "TLSv1.3"


def test_the_agent_follows_the_kubelets_data_swap(tmp_path: Path):
    """What mounting the directory buys: a renewal written by the kubelet reaches the agent."""
    ca = trustme.CA()
    directory = tmp_path / "tls"
    write_secret_volume(directory, tls_secret(ca, "demo-sidecar-agent.prod.svc"), "2026_12_01")
    listener = TlsListener("main", ListenerTlsConfig(cert_file=str(directory / "tls.crt"), key_file=str(directory / "tls.key")))
    first = listener.certificate.serial
    assert listener.reload() is False  # nothing changed
    write_secret_volume(directory, tls_secret(ca, "demo-sidecar-agent.prod.svc"), "2027_02_01")
    assert listener.reload() is True
    assert listener.certificate.serial != first and listener.reloads == 1


# --- bad values fail at install time -------------------------------------------------------

SCHEMA_ERRORS = {
    "enabled without secretName": {"tls": {"enabled": True}},
    "enabled with an empty secretName": {"tls": {"enabled": True, "secretName": ""}},
    "secretName not a Secret name": {"tls": {"enabled": True, "secretName": "Tracker_TLS"}},
    "unknown clientAuth": {"tls": {"enabled": True, "secretName": "t", "clientAuth": "request"}},
    "unknown tls key": {"tls": {"enabled": True, "secretName": "t", "secret": "t"}},
    "bad min_version": {**TLS, "agent": {"config": {"server": {"tls": {"min_version": "TLSv1.1"}}}}},
}

TEMPLATE_ERRORS = {
    "clientAuth require": (
        {"tls": {**MTLS["tls"], "clientAuth": "require"}},
        "tls.clientAuth: require would fail the kubelet's probes",
    ),
    "client CA without TLS": ({"tls": {"clientCaSecretName": "ca"}}, "tls.clientCaSecretName needs tls.enabled"),
    "cert_file by hand": (
        {"agent": {"config": {"server": {"tls": {"cert_file": "/certs/tls.crt"}}}}},
        "agent.config.server.tls.cert_file is set by the chart",
    ),
    "env hides the cert": (
        {**TLS, "agent": {"env": [{"name": "AGENT_SERVER_TLS_CERT_FILE", "value": "/x"}]}},
        "AGENT_SERVER_TLS_CERT_FILE would hide",
    ),
}


@pytest.mark.parametrize("name", SCHEMA_ERRORS)
def test_values_schema_rejects(name: str):
    with pytest.raises(helm.HelmValuesError):
        render(SCHEMA_ERRORS[name])


def test_the_schema_says_secret_name_is_required():
    with pytest.raises(helm.HelmValuesError, match=re.escape("/tls/secretName")):
        render({"tls": {"enabled": True}})


@pytest.mark.parametrize("name", TEMPLATE_ERRORS)
def test_templates_refuse(name: str):
    values, message = TEMPLATE_ERRORS[name]
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values)
