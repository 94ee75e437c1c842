"""The chart on every Kubernetes version it supports (Chart.yaml ``kubeVersion: >=1.25.0-0``).

Rendered for each version as ``helm install`` renders it against such a cluster
(``.Capabilities.KubeVersion``), and every manifest validated, strictly, against that version's
schemas: a field the version does not know (a native sidecar's ``restartPolicy`` before 1.29, the
``sleep`` lifecycle action before 1.29) fails.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.support.chart import (
    CHART,
    KUBERNETES_VERSIONS,
    agent_container,
    app_container,
    assert_valid_for,
    containers_by_name,
    manifests,
    one,
    pod_spec,
    with_images,
)

VARIATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "native-auto": {"nativeSidecar": "auto"},
    "everything": {
        "nativeSidecar": "auto",
        "serviceMonitor": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "database": {"existingSecret": "tracker-db"},
        "tls": {"enabled": True, "secretName": "tracker-tls", "clientCaSecretName": "tracker-client-ca"},
    },
}


def minor(version: str) -> int:
    return int(version.split(".")[1])


def test_chart_declares_the_oldest_version_tested():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.25.0-0"  # -0: also pre-releases and EKS/GKE's v1.25.x-eks-...
    assert KUBERNETES_VERSIONS[0] == "1.25"
    # kubernetes-validate ships a schema for every version the tests name.
    assert {f"{v}.0" for v in KUBERNETES_VERSIONS} <= set(kubernetes_validate.utils.all_versions())


@pytest.mark.parametrize("name", VARIATIONS)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_for_the_cluster_version(version: str, name: str):
    docs = manifests(VARIATIONS[name], kube_version=version)
    assert_valid_for(docs, version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_helm_lint_is_clean_for_the_cluster_version(version: str):
    report = helm.lint(CHART, with_images(VARIATIONS["everything"]), strict=True, kube_version=f"v{version}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_version_check_is_live():
    """A canary: 1.29's native sidecar is refused by 1.27's schema, so the test above can fail,
    and the renderer does render for the version it is given."""
    deployment = one(manifests({"nativeSidecar": True}, kube_version="1.29"), "Deployment")
    assert "initContainers" in deployment["spec"]["template"]["spec"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.27", strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_native_sidecar_auto_follows_the_cluster(version: str):
    spec = pod_spec(manifests({"nativeSidecar": "auto"}, kube_version=version))
    if minor(version) >= 29:
        assert set(containers_by_name(spec)) == {"app"}
        assert containers_by_name(spec, "initContainers")["agent"]["restartPolicy"] == "Always"
    else:
        assert set(containers_by_name(spec)) == {"app", "agent"} and "initContainers" not in spec
        assert "restartPolicy" not in containers_by_name(spec)["agent"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_native_sidecar_false_is_a_regular_container_everywhere(version: str):
    spec = pod_spec(manifests({"nativeSidecar": False}, kube_version=version))
    assert "initContainers" not in spec and "agent" in containers_by_name(spec)


@pytest.mark.parametrize("version", ["1.25", "1.27"])
def test_native_sidecar_true_refuses_an_old_cluster(version: str):
    refusal = r"nativeSidecar: true needs Kubernetes 1\.29 or newer.*set nativeSidecar: auto"
    with pytest.raises(helm.HelmRenderError, match=refusal):
        manifests({"nativeSidecar": True}, kube_version=version)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_prestop_sleep_action_from_1_30_exec_before(version: str):
    pre_stop = app_container(manifests(kube_version=version))["lifecycle"]["preStop"]
    if minor(version) >= 30:
        assert pre_stop == {"sleep": {"seconds": 5}}
    else:
        # The app image's own sleep: documented in values.yaml and the chart's README.
        assert pre_stop == {"exec": {"command": ["sleep", "5"]}}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_native_sidecar_startup_probe_on_every_version_that_has_it(version: str):
    """The native sidecar's startupProbe gates the app's start: it must not wait for the app."""
    agent = agent_container(manifests({"nativeSidecar": "auto"}, kube_version=version))
    path = agent["startupProbe"]["httpGet"]["path"]
    assert path == ("/health/live" if minor(version) >= 29 else "/health/startup")


def test_schema_takes_auto_true_false_only():
    for value in (True, False, "auto"):
        manifests({"nativeSidecar": value}, kube_version="1.31")
    with pytest.raises(helm.HelmValuesError):
        manifests({"nativeSidecar": "yes"})
