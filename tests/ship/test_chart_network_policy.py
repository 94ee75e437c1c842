"""networkPolicy.enabled: ingress to the pod only on the agent's ports, the admin port only from
the namespaces that scrape it; validated against the Kubernetes schemas of every supported version."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.support.chart import KUBERNETES_VERSIONS, app_container, by_kind, manifests, one

MONITORING = {"networkPolicy": {"enabled": True, "metricsNamespaces": ["monitoring", "observability"]}}
INGRESS_NGINX = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}


def rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress (database, checks, OTLP) untouched
    ingress: list[dict[str, Any]] = policy["spec"]["ingress"]
    return ingress


def ports(rule: dict[str, Any]) -> list[int]:
    return [p["port"] for p in rule["ports"]]


def test_off_by_default():
    assert by_kind(manifests(), "NetworkPolicy") == []


def test_enabled_admits_the_main_port_from_anywhere_and_nothing_else():
    docs = manifests({"networkPolicy": {"enabled": True}})
    [main] = rules(docs)
    assert main == {"ports": [{"port": 8000, "protocol": "TCP"}]}  # no "from": every source
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_admin_port_only_from_the_metrics_namespaces():
    docs = manifests(MONITORING)
    main, admin = rules(docs)
    assert ports(main) == [8000] and "from" not in main
    assert ports(admin) == [9464]
    assert admin["from"] == [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring", "observability"]}
                ]
            }
        }
    ]
    # The app's own port is in no rule: it is reached only through the agent, over loopback.
    app_port = app_container(docs)["ports"][0]["containerPort"]
    assert all(app_port not in ports(rule) for rule in rules(docs))


def test_main_port_sources_can_be_restricted():
    main, _ = rules(manifests({"networkPolicy": {**MONITORING["networkPolicy"], "ingressFrom": [INGRESS_NGINX]}}))
    assert main["from"] == [INGRESS_NGINX]


def test_ports_follow_the_agent_ports():
    main, admin = rules(manifests({**MONITORING, "agent": {"ports": {"http": 8443, "admin": 9000}}}))
    assert ports(main) == [8443] and ports(admin) == [9000]


def test_admin_listener_off_leaves_only_the_main_port():
    """/metrics then moves to the main port and follows ingressFrom."""
    docs = manifests({**MONITORING, "agent": {"config": {"admin": {"enabled": False}}}})
    assert [ports(rule) for rule in rules(docs)] == [[8000]]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validates_against_every_supported_version(version: str):
    peers = [INGRESS_NGINX, {"ipBlock": {"cidr": "10.0.0.0/8"}}]
    values = {"networkPolicy": {**MONITORING["networkPolicy"], "ingressFrom": peers}}
    policy = one(manifests(values, kube_version=version), "NetworkPolicy")
    assert kubernetes_validate.validate(policy, version, strict=True) == version


@pytest.mark.parametrize(
    "values",
    [
        {"metricsNamespaces": ["Monitoring"]},  # not a namespace name
        {"metricsNamespaces": "monitoring"},
        {"ingressFrom": [{"podSelectr": {}}]},
        {"ingressFrom": [{}]},  # an empty peer would admit everything
        {"enable": True},
    ],
)
def test_schema_rejects(values: dict[str, Any]):
    with pytest.raises(helm.HelmValuesError):
        manifests({"networkPolicy": values})
