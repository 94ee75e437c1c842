"""The compiled request path (agent/compiled.py, setup.py): what runs, the switch, and stale builds.

The suite itself runs twice in scripts/test.sh (compiled, then ``AGENT_PURE_PYTHON=1``), so every
behaviour test covers both forms; these tests cover the choice between them.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import compiled
from tests.support import REPO_ROOT
from tests.support.agent import AgentProcess, proxy_config

PROBE = (
    "import json, agent.compiled as c, importlib; "
    "mods = [importlib.import_module(m) for m in c.COMPILED_MODULES]; "
    "print(json.dumps({'code': c.code, 'compiled': [c.is_compiled(m) for m in mods]}))"
)


def run_probe(root: Path, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    environ.update(env, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=root, env=environ, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def build_is_compiled() -> bool:
    return run_probe(REPO_ROOT)["code"] == "compiled (mypyc)"


needs_build = pytest.mark.skipif(
    not (REPO_ROOT / "agent" / "_compiled_sources.py").exists(),
    reason="this checkout was installed without compiling (no C compiler or SIDECAR_AGENT_COMPILE=0)",
)


def test_the_decision_names_what_runs() -> None:
    built = {"agent.proxy.wire": "a", "agent.rules.ids": "b"}
    assert compiled.decide(None, False, False, {}) == "pure Python (not compiled)"
    assert compiled.decide(built, False, False, {}) == "pure Python (not compiled)"  # record without extensions
    assert compiled.decide(built, True, True, dict(built)) == "pure Python (AGENT_PURE_PYTHON=1)"
    assert compiled.decide(built, False, True, dict(built)) == "compiled (mypyc)"
    changed = compiled.decide(built, False, True, {"agent.proxy.wire": "a", "agent.rules.ids": "edited"})
    assert changed == "pure Python (changed since compiled: agent.rules.ids)"


@pytest.mark.parametrize(("value", "pure"), [("1", True), ("true", True), ("0", False), ("", False), ("no", False)])
def test_the_switch_reads_like_a_boolean(value: str, pure: bool) -> None:
    assert compiled.pure_requested({compiled.PURE_ENV: value}) is pure


def test_setup_compiles_the_listed_modules_and_each_exists() -> None:
    """setup.py reads the tuple without importing the package: it must stay a literal of real modules."""
    tree = ast.parse((REPO_ROOT / "agent" / "compiled.py").read_text())
    assigns = [n for n in tree.body if isinstance(n, ast.Assign)]
    literal = next(n.value for n in assigns if getattr(n.targets[0], "id", "") == "COMPILED_MODULES")
    assert tuple(ast.literal_eval(literal)) == compiled.COMPILED_MODULES
    for module in compiled.COMPILED_MODULES:
        assert compiled.source_path(module).is_file(), module


def test_the_switch_loads_every_module_from_its_source() -> None:
    result = run_probe(REPO_ROOT, AGENT_PURE_PYTHON="1")
    assert result["compiled"] == [False] * len(compiled.COMPILED_MODULES)
    assert str(result["code"]).startswith("pure Python")


@needs_build
def test_a_compiled_install_runs_every_listed_module_compiled() -> None:
    result = run_probe(REPO_ROOT)
    assert result == {"code": "compiled (mypyc)", "compiled": [True] * len(compiled.COMPILED_MODULES)}


@needs_build
def test_an_edited_source_is_never_shadowed_by_a_stale_build(tmp_path: Path) -> None:
    """Edit one compiled module's .py after the build: all of them load from source, and the edit runs."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT / "agent", root / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    for lib in REPO_ROOT.glob("agent__mypyc*"):
        shutil.copy2(lib, root / lib.name)
    assert run_probe(root)["code"] == "compiled (mypyc)"  # the copy is a working build
    wire = root / "agent" / "proxy" / "wire.py"
    wire.write_text(wire.read_text() + "\nEDITED = True\n")
    result = run_probe(root)
    assert result == {
        "code": "pure Python (changed since compiled: agent.proxy.wire)",
        "compiled": [False] * len(compiled.COMPILED_MODULES),
    }
    check = "import agent.proxy.wire as w; print(w.EDITED)"
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", check], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr


def test_the_agent_logs_what_it_runs(agent_factory: Callable[..., AgentProcess]) -> None:
    agent = agent_factory(proxy_config("http://127.0.0.1:9"))
    started = next(json.loads(line) for line in agent.output().splitlines() if '"agent started"' in line)
    expected = "pure Python" if os.environ.get(compiled.PURE_ENV) == "1" or not build_is_compiled() else "compiled (mypyc)"
    assert str(started["code"]).startswith(expected)
