"""The atheris target ``fuzz/request_path.py``: a short, fixed run on every test run.

The target is run in a subprocess (atheris takes over the process, and the target sets up the
agent's logging): first replaying the raw corpus without atheris (always), then, when atheris is
importable, a bounded libFuzzer run (fixed seed, ``-runs``) starting from the corpus. Longer runs:
see fuzz/README.md.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "fuzz" / "request_path.py"
CORPUS = ROOT / "tests" / "corpus" / "requests"
CRASHES = ROOT / "fuzz" / "crashes"
# Known open agent bugs to steer around (fuzz/request_path.py KNOWN_BUGS); none at the moment.
KNOWN: dict[str, str] = {}


def run(args: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TARGET), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_fuzz_target_replays_the_corpus_without_atheris() -> None:
    done = run(["--replay", str(CORPUS)], timeout=120, env=KNOWN)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "without a failure" in done.stdout


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed (pip install atheris)")
def test_short_atheris_run_finds_nothing(tmp_path: Path) -> None:
    new, artifacts = tmp_path / "new", tmp_path / "artifacts"
    new.mkdir()
    artifacts.mkdir()
    # New inputs go to the first directory (a temporary one); the committed corpus only seeds.
    done = run(["-runs=4000", "-seed=1", f"-artifact_prefix={artifacts}/", str(new), str(CORPUS)], timeout=180, env=KNOWN)
    crashes = sorted(p.name for p in artifacts.iterdir())
    assert done.returncode == 0 and not crashes, f"crashes: {crashes}\n{done.stderr[-4000:]}"
    assert "Done 4000 runs" in done.stderr, done.stderr[-2000:]


def test_inputs_that_found_bugs_no_longer_fail() -> None:
    done = run(["--replay", str(CRASHES)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
