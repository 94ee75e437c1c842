"""The shipped example config and README stay true to the code."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from agent.config import CHECK_TYPES, SECTIONS, CommonCheckKeys, load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "agent.toml.example"


def documented_keys() -> set[str]:
    """Keys set or shown (commented out) in the example, as ``section.key`` / ``checks.*.key``."""
    keys = set()
    section = ""
    for raw in EXAMPLE.read_text().splitlines():
        line = raw.lstrip("# ").strip()
        if match := re.fullmatch(r"\[([\w.-]+)\]", line):
            section = match.group(1)
            if section.startswith("checks."):
                section = "checks.*"
        elif match := re.match(r"([A-Za-z_][\w-]*)\s*=", line):
            keys.add(f"{section}.{match.group(1)}")
    return keys


def test_example_documents_every_key():
    documented = documented_keys()
    missing = []
    for name, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            if field.metadata and f"{name}.{field.name}" not in documented:
                missing.append(f"{name}.{field.name}")
    for cls in (CommonCheckKeys, *CHECK_TYPES.values()):
        for field in dataclasses.fields(cls):
            if field.metadata and f"checks.*.{field.name}" not in documented:
                missing.append(f"checks.*.{field.name}")
    assert missing == []


def test_example_is_valid():
    config = load_config(EXAMPLE, {"DATABASE_URL": "postgresql://agent:pw@127.0.0.1:5432/app"})
    assert {c.name for c in config.checks} >= {"database", "upstream", "disk"}
    assert tomllib.loads(EXAMPLE.read_text())["server"]["listen"] == "0.0.0.0:8000"


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    from agent.cli import _parser

    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    used = set(re.findall(r"sidecar-agent (\w[\w-]*)", readme))
    assert used - commands == set()
    assert {"run", "check-config", "probe", "demo", "version"} <= used
    assert (ROOT / "scripts" / "test.sh").exists() and "./scripts/test.sh" in readme
