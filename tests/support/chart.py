"""The Helm chart rendered with Helm's own engine (helm-python-sdk binds Helm's Go SDK; no helm
binary), and the Kubernetes objects it renders."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support import REPO_ROOT

CHART = REPO_ROOT / "charts" / "sidecar-agent"
KUBERNETES_VERSION = "1.30"


def render(values: dict[str, Any] | None = None, *, release: str = "demo", namespace: str = "prod") -> dict[str, str]:
    """Template path -> rendered text, as ``helm install`` would render it (schema checked)."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=release, namespace=namespace, is_install=True)


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
