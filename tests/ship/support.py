"""Helpers for the shipping tests: a small Dockerfile reader, chart rendering with Helm's own
engine (helm-python-sdk binds Helm's Go SDK; no helm binary), and the ``sidecar-agent``
console script the image runs."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sidecar-agent"
KUBERNETES_VERSION = "1.30"


# --- Dockerfile ----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON-array (exec) form's argv, or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """ENV instructions in the ``KEY=value`` form (the only one this Dockerfile uses)."""
        env: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for item in shlex.split(instruction.args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV without '=': {instruction.args!r}"
                env[key] = value
        return env


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """(ARG defaults declared before the first FROM, stages in order)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, got {keyword}"
            key, _, value = rest.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return args, stages


# --- the console script ------------------------------------------------------------------


def console_script_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds ``sidecar-agent`` running this checkout's code.

    The console script pip generated next to this interpreter is used when there is one;
    otherwise an equivalent one is written from pyproject's [project.scripts] entry.
    PYTHONPATH points at the checkout either way.
    """
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["sidecar-agent"]
    module, _, func = entry.partition(":")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "sidecar-agent").is_file():
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "sidecar-agent"
        script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_") and k != "DATABASE_URL"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def check_config(toml_text: str, tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``sidecar-agent check-config -c FILE``; assert exit 0; return the effective config."""
    config_file = tmp_path / "agent.toml"
    config_file.write_text(toml_text)
    run_env = console_script_env(tmp_path)
    run_env.update(env or {})
    done = subprocess.run(
        ["sidecar-agent", "check-config", "-c", str(config_file)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"check-config failed ({done.returncode}): {done.stderr}\n--- file ---\n{toml_text}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- the chart ---------------------------------------------------------------------------


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
