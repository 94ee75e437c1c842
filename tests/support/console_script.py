"""The ``sidecar-agent`` console script the image runs, run from this checkout: an environment
whose PATH finds it, and ``check-config`` through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.support import REPO_ROOT, environ_without_agent_config


def console_script_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH finds ``sidecar-agent`` running this checkout's code.

    The console script pip generated next to this interpreter is used when there is one;
    otherwise an equivalent one is written from pyproject's [project.scripts] entry.
    PYTHONPATH points at the checkout either way.
    """
    entry = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["sidecar-agent"]
    module, _, func = entry.partition(":")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "sidecar-agent").is_file():
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        script = bin_dir / "sidecar-agent"
        script.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        script.chmod(0o755)
    env = environ_without_agent_config()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO_ROOT)
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
