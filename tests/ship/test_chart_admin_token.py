"""The agent's admin token in the chart: generated into a Secret on install and kept on upgrade
(read back with ``lookup``), or taken from a Secret of the user's; never in the ConfigMap."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.chart import CHART, agent_container, by_kind, manifests, one

TEMPLATE = CHART / "templates" / "admin-token-secret.yaml"
# The one call that reads the release's Secret back from the cluster.
LOOKUP = 'lookup "v1" "Secret" .Release.Namespace $name'


def token_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [env] = [e for e in agent_container(docs)["env"] if e["name"] == "AGENT_ADMIN_TOKEN"]
    return env


def generated_token(docs: list[dict[str, Any]]) -> str:
    secret = one(docs, "Secret")
    return base64.b64decode(secret["data"]["token"]).decode()


def test_install_generates_a_random_token_into_a_secret():
    docs = manifests()
    secret = one(docs, "Secret")
    assert secret["metadata"]["name"] == "demo-sidecar-agent-admin-token"
    assert secret["type"] == "Opaque" and set(secret["data"]) == {"token"}
    token = generated_token(docs)
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token)  # randAlphaNum 48: about 285 bits
    assert token_env(docs) == {
        "name": "AGENT_ADMIN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "demo-sidecar-agent-admin-token", "key": "token"}},
    }
    # Not in the ConfigMap, not in the pod spec.
    assert token not in one(docs, "ConfigMap")["data"]["agent.toml"]
    assert token not in str(one(docs, "Deployment"))


def test_every_install_gets_its_own_token():
    assert generated_token(manifests()) != generated_token(manifests())


def test_existing_secret_is_used_and_none_rendered():
    docs = manifests({"adminToken": {"existingSecret": "tracker-admin", "secretKey": "admin-token"}})
    assert by_kind(docs, "Secret") == []
    assert token_env(docs)["valueFrom"] == {"secretKeyRef": {"name": "tracker-admin", "key": "admin-token"}}


def test_a_custom_key_names_the_generated_secrets_key_too():
    docs = manifests({"adminToken": {"secretKey": "bearer"}})
    assert set(one(docs, "Secret")["data"]) == {"bearer"}
    assert token_env(docs)["valueFrom"]["secretKeyRef"]["key"] == "bearer"


def test_upgrade_keeps_the_token_by_reading_the_secret_back():
    """helm-python-sdk renders offline (``lookup`` always returns an empty map, as under ``helm
    template``) and takes no lookup results, so an upgrade cannot be rendered as such. By reading:
    the template looks up the Secret it renders (same helper for both names), once."""
    text = TEMPLATE.read_text()
    assert text.count(LOOKUP) == 1
    assert '$name := include "sidecar-agent.adminTokenSecretName" .' in text
    assert "name: {{ $name }}" in text


def test_upgrade_keeps_the_token_with_lookup_answered(tmp_path: Path):
    """The rest of the logic with the lookup's answer put in its place: a copy of the chart whose
    ``lookup`` call is replaced by the Secret an earlier install made."""
    previous = base64.b64encode(b"the-token-from-the-first-install").decode()
    chart = Path(shutil.copytree(CHART, tmp_path / "sidecar-agent"))
    template = chart / "templates" / TEMPLATE.name
    answered = f'(dict "data" (dict "token" "{previous}"))'
    template.write_text(TEMPLATE.read_text().replace(LOOKUP, answered))
    docs = manifests(chart_dir=chart)
    assert one(docs, "Secret")["data"]["token"] == previous
    # A Secret that exists without the key (someone edited it): a new token, not an empty one.
    template.write_text(TEMPLATE.read_text().replace(LOOKUP, '(dict "data" (dict "other" "eA=="))'))
    assert re.fullmatch(r"[A-Za-z0-9]{48}", generated_token(manifests(chart_dir=chart)))


@pytest.mark.parametrize("key", ["", "a/b", "with space"])
def test_schema_rejects_a_key_kubernetes_would(key: str):
    import helm_python as helm

    with pytest.raises(helm.HelmValuesError):
        manifests({"adminToken": {"secretKey": key}})


def test_notes_say_where_the_token_is():
    from tests.support.chart import render

    notes = render()["sidecar-agent/templates/NOTES.txt"]
    assert "kubectl -n prod get secret demo-sidecar-agent-admin-token -o jsonpath='{.data.token}' | base64 -d" in notes
    assert 'curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9464/health' in notes
