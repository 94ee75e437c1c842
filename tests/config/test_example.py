"""``agent.toml.example`` validates as shipped, with nothing set in the environment."""

from __future__ import annotations

import subprocess
import sys

from tests.support import environ_without_agent_config
from tests.support.agent import REPO_ROOT


def test_check_config_accepts_the_shipped_example() -> None:
    env = environ_without_agent_config()
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "agent", "check-config", "-c", "agent.toml.example"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["configuration OK (agent.toml.example)"]
