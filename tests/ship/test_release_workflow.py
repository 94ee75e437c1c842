"""The release workflow: actionlint finds nothing in it, and it does what the README says (a
multi-arch image and the chart as an OCI artifact on ghcr.io, on a v* tag, minimal permissions)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO_ROOT
from tests.support.actionlint import ActionlintUnavailable, actionlint

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def lint(path: Path) -> list[dict[str, Any]]:
    try:
        return actionlint(path)
    except ActionlintUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"actionlint cannot run under CI: {exc}")
        pytest.skip(str(exc))


def test_actionlint_finds_nothing():
    assert lint(WORKFLOW) == []


def test_actionlint_is_live(tmp_path: Path):
    """A canary: the same call reports a broken copy, so the test above can fail."""
    broken = tmp_path / "release.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-latst", 1))
    assert [f["kind"] for f in lint(broken)] == ["runner-label"]


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return found


def test_runs_on_version_tags_only_with_minimal_permissions(workflow: dict[str, Any]):
    # PyYAML reads the key "on" as True (YAML 1.1).
    assert workflow[True] == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "read", "packages": "write"}
    assert all("permissions" not in job for job in workflow["jobs"].values())


def test_actions_are_pinned_to_major_versions(workflow: dict[str, Any]):
    uses = [step["uses"] for job in workflow["jobs"] for step in steps(workflow, job) if "uses" in step]
    assert uses and all(re.fullmatch(r"[\w-]+/[\w-]+@v\d+", u) for u in uses), uses


def test_image_is_multi_arch_on_ghcr(workflow: dict[str, Any]):
    by_action = {step["uses"].split("@")[0]: step for step in steps(workflow, "image") if "uses" in step}
    needed = {"docker/setup-qemu-action", "docker/setup-buildx-action", "docker/login-action", "docker/build-push-action"}
    assert needed <= set(by_action)
    login = by_action["docker/login-action"]["with"]
    assert login == {"registry": "ghcr.io", "username": "${{ github.actor }}", "password": "${{ secrets.GITHUB_TOKEN }}"}
    build = by_action["docker/build-push-action"]["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert "startsWith(github.ref, 'refs/tags/v')" in build["push"]
    assert by_action["docker/metadata-action"]["with"]["images"] == "ghcr.io/${{ github.repository_owner }}/sidecar-agent"


def test_chart_is_pushed_as_an_oci_artifact(workflow: dict[str, Any]):
    script = "\n".join(step.get("run", "") for step in steps(workflow, "chart"))
    assert "helm package charts/sidecar-agent" in script
    assert re.search(r'helm push "\$chart" "oci://ghcr\.io/\$\{owner\}/charts"', script)
    assert "--password-stdin" in script  # the token never on a command line
