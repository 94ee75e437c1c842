"""The Helm chart rendered with Helm's own engine (helm-python-sdk binds Helm's Go SDK; no helm
binary), and the Kubernetes objects it renders."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO_ROOT

CHART = REPO_ROOT / "charts" / "sidecar-agent"
KUBERNETES_VERSION = "1.30"
# Every minor version the chart supports (Chart.yaml kubeVersion) that kubernetes-validate has
# schemas for, up to the newest release the chart was checked against.
KUBERNETES_VERSIONS = ("1.25", "1.27", "1.29", "1.30", "1.31")
# Both images must be set (the chart refuses to render without them): placeholders that look real.
IMAGES: dict[str, Any] = {
    "app": {"image": {"repository": "registry.example.com/platform/tracker-api"}},
    "agent": {"image": {"repository": "registry.example.com/platform/sidecar-agent"}},
}


def with_images(values: dict[str, Any] | None) -> dict[str, Any]:
    """``values`` over :data:`IMAGES` (a deep merge: ``values`` win, an explicit "" included)."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        merged = copy.deepcopy(base)
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged

    return merge(IMAGES, values or {})


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "demo",
    namespace: str = "prod",
    kube_version: str = KUBERNETES_VERSION,
    chart_dir: Path = CHART,
) -> dict[str, str]:
    """Template path -> rendered text, as ``helm install --kube-version`` would render it for a
    cluster of ``kube_version`` (schema checked). ``values`` go over :data:`IMAGES`."""
    import helm_python as helm
    from helm_python import _native

    # Chart.render() does not take the cluster's version, but the library's render options do
    # (the same option helm_python.lint passes): ``.Capabilities.KubeVersion`` in the templates.
    # Without it the library renders for its own default (a newer Kubernetes than the tests check).
    opts = {"name": release, "namespace": namespace, "is_install": True, "kube_version": f"v{kube_version}.0"}
    with helm.Chart.load(chart_dir) as chart:
        rendered = _native.call_string("helm_render", chart._raw(), json.dumps(with_images(values)), json.dumps(opts))
    manifests: dict[str, str] = json.loads(rendered)
    return manifests


def manifests(values: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and empty templates left out)."""
    docs: list[dict[str, Any]] = []
    for name, text in sorted(render(values, **kwargs).items()):
        if not name.endswith((".yaml", ".yml")):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def containers_by_name(pod_spec: dict[str, Any], key: str = "containers") -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec.get(key) or []}


def agent_toml(docs: list[dict[str, Any]]) -> str:
    configmap = one(docs, "ConfigMap")
    text: str = configmap["data"]["agent.toml"]
    return text


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def agent_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The agent container, a regular one or a native sidecar."""
    spec = pod_spec(docs)
    found = [c for key in ("containers", "initContainers") for c in spec.get(key) or [] if c["name"] == "agent"]
    assert len(found) == 1
    return found[0]


def app_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return containers_by_name(pod_spec(docs))["app"]


def port_number(container: dict[str, Any], name: str) -> int:
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    return int(ports[name])


# The Prometheus operator's kinds are CRDs: no schema in kubernetes-validate.
OPERATOR_KINDS = frozenset({"ServiceMonitor", "PodMonitor"})


def assert_valid_for(docs: list[dict[str, Any]], version: str) -> None:
    """Every manifest but the operator's validates against ``version``'s schemas, strictly
    (unknown fields are errors too: the API server silently drops a misplaced key)."""
    import kubernetes_validate

    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            continue
        found = kubernetes_validate.validate(doc, version, strict=True)
        assert found == version, (doc["kind"], found)
