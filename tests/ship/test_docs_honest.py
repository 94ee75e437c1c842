"""The docs name only things that exist: commands, config keys, AGENT_* variables, chart values;
their TOML, YAML and Kubernetes examples are accepted by the agent, the chart and the Kubernetes
schemas; agent.toml.example shows every key and is a valid config; the README shows every command."""

from __future__ import annotations

import dataclasses
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

import kubernetes_validate
import pytest
import yaml

from agent.cli import _parser
from agent.compiled import PURE_ENV
from agent.config import CHECK_TYPES, DEFAULT_CHECKS, SECTIONS, CommonCheckKeys, ConfigError, build_config, load_config
from tests.support import REPO_ROOT
from tests.support.chart import CHART, KUBERNETES_VERSION, render

DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
EXAMPLE = REPO_ROOT / "agent.toml.example"
CHART_README = CHART / "README.md"
SHIPPING_DOCS = [*DOCS, CHART_README]
ALL_DOCS = [*SHIPPING_DOCS, REPO_ROOT / "README.md"]
EMPTY_CONFIG = REPO_ROOT / "deploy" / "docker" / "agent.toml"
FILE_SUFFIXES = {"toml", "yaml", "yml", "json", "md", "txt", "py", "sock", "example", "tpl", "io", "com", "crt", "key", "pem"}


def file_keys(cls: type[Any]) -> dict[str, Any]:
    """Section ``cls``'s file keys and their types; a dataclass type is a nested table."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.metadata}


def dotted_keys(cls: type[Any]) -> set[str]:
    """Every value key of ``cls``, nested tables' keys dotted (``tls.cert_file``), not the tables."""
    keys = set()
    for name, hint in file_keys(cls).items():
        if dataclasses.is_dataclass(hint):
            keys |= {f"{name}.{key}" for key in dotted_keys(hint)}
        else:
            keys.add(name)
    return keys


def names_a_key(cls: type[Any], parts: list[str]) -> bool:
    """Whether ``parts`` walks from section ``cls`` to one of its keys or nested tables."""
    hint = file_keys(cls).get(parts[0])
    if hint is None:
        return False
    if len(parts) == 1:
        return True
    return dataclasses.is_dataclass(hint) and names_a_key(hint, parts[1:])


CHECK_CLASSES = (CommonCheckKeys, *CHECK_TYPES.values())
SECTION_KEYS = {name: dotted_keys(cls) for name, cls in SECTIONS.items()}
CHECK_KEYS = {key for cls in CHECK_CLASSES for key in dotted_keys(cls)}
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^ *```(\w*)\n(.*?)^ *```", text, re.MULTILINE | re.DOTALL)]


def code_spans(text: str) -> list[str]:
    without_blocks = re.sub(r"^ *```.*?^ *```", "", text, flags=re.MULTILINE | re.DOTALL)
    # Inside a Markdown table a literal pipe is written "\|".
    return [span.replace("\\|", "|") for span in re.findall(r"`([^`\n]+)`", without_blocks)]


def shell_commands(body: str) -> list[list[str]]:
    """``sidecar-agent ...`` invocations in a shell block, continuation lines joined."""
    found = []
    for line in body.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0]
        for segment in re.split(r"&&|\|\||\||;", line):
            words = shlex.split(segment)
            for i, word in enumerate(words):
                if word == "sidecar-agent" or word.endswith("/bin/sidecar-agent"):
                    found.append(words[i + 1 :])
                    break
    return found


def documented_keys() -> set[str]:
    """Keys set or shown (commented out) in the example, as ``section.key`` / ``checks.*.key``
    (``server.tls.cert_file``, ``checks.*.tls.ca_file`` in nested tables)."""
    keys = set()
    section = ""
    for raw in EXAMPLE.read_text().splitlines():
        line = raw.lstrip("# ").strip()
        if match := re.fullmatch(r"\[([\w.-]+)\]", line):
            section = match.group(1)
            if section.startswith("checks."):
                section = ".".join(["checks", "*", *section.split(".")[2:]])
        elif match := re.match(r"([A-Za-z_][\w-]*)\s*=", line):
            keys.add(f"{section}.{match.group(1)}")
    return keys


def test_example_documents_every_key():
    documented = documented_keys()
    keys = [f"{name}.{key}" for name, section_keys in SECTION_KEYS.items() for key in sorted(section_keys)]
    keys += [f"checks.*.{key}" for key in sorted(CHECK_KEYS)]
    assert [key for key in keys if key not in documented] == []


def test_example_is_valid():
    config = load_config(EXAMPLE, {"DATABASE_URL": "postgresql://agent:pw@127.0.0.1:5432/app"})
    assert {c.name for c in config.checks} >= {"database", "upstream", "disk"}
    assert tomllib.loads(EXAMPLE.read_text())["server"]["listen"] == "0.0.0.0:8000"


def test_readme_names_every_command_and_no_other():
    readme = (REPO_ROOT / "README.md").read_text()
    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    named = set(re.findall(r"sidecar-agent (\w[\w-]*)", readme))
    assert named - commands == set()
    assert commands - named == set()


def test_readme_test_script_exists():
    assert (REPO_ROOT / "scripts" / "test.sh").exists() and "./scripts/test.sh" in (REPO_ROOT / "README.md").read_text()


def test_the_docs_exist_and_link_each_other():
    names = {p.name for p in DOCS}
    assert {"PRODUCTION.md", "DEPLOYMENT.md"} <= names
    assert "DEPLOYMENT.md" in (REPO_ROOT / "docs" / "PRODUCTION.md").read_text()
    assert "PRODUCTION.md" in (REPO_ROOT / "docs" / "DEPLOYMENT.md").read_text()


@pytest.mark.parametrize("path", ALL_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_commands_shown_exist(path: Path):
    text = path.read_text()
    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for span in code_spans(text):
        for name in re.findall(r"(?<![\w/.-])sidecar-agent (\w[\w-]*)", span):
            assert name in commands, f"{path.name}: `{span}`"
    for language, body in fenced_blocks(text):
        if language not in ("sh", "bash", "console", "ini", ""):
            continue
        for argv in shell_commands(body):
            if not argv:
                continue
            if path.name == "README.md" and argv[0] not in commands:
                continue  # the README's names are checked by test_readme_names_every_command_and_no_other
            try:
                _parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"{path.name}: `sidecar-agent {' '.join(argv)}` is not a valid command line")


def agent_variables(text: str) -> set[str]:
    return set(re.findall(r"\bAGENT_[A-Z0-9_]+", text))


@pytest.mark.parametrize("path", SHIPPING_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_agent_variables_name_real_keys(path: Path):
    for name in sorted(agent_variables(path.read_text()) - {"AGENT_CONFIG", PURE_ENV}):
        rest = name[len("AGENT_") :].lower()
        assert any(rest.startswith(section + "_") for section in [*SECTIONS, "checks"]), f"{name}: no such section"
        try:
            load_config(EMPTY_CONFIG, {name: "1"})
        except ConfigError as exc:
            assert "unknown key" not in str(exc), f"{path.name}: {name}: {exc}"


def config_key_exists(parts: list[str]) -> bool:
    if parts == ["checks"]:
        return True
    if parts[0] == "checks":
        # checks.NAME.key (checks.NAME.tls.ca_file), or checks.NAME for a built-in check's table
        if len(parts) == 2:
            return parts[1] in DEFAULT_CHECKS
        return any(names_a_key(cls, parts[2:]) for cls in CHECK_CLASSES)
    if parts[0] not in SECTIONS:
        return False
    if len(parts) == 1:
        return True  # a whole section
    return names_a_key(SECTIONS[parts[0]], parts[1:]) or (parts[0] == "security_headers" and len(parts) == 2)


def values_key_exists(parts: list[str]) -> bool:
    node: Any = VALUES
    for i, part in enumerate(parts):
        if parts[: i + 1] == ["agent", "config"]:
            return i + 1 == len(parts) or config_key_exists(parts[i + 1 :])
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize("path", ALL_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dotted_keys_exist(path: Path):
    """`server.drain_delay_s` is an agent config key; `agent.config.server.drain_delay_s`,
    `serviceMonitor.enabled` are chart values. Either must exist."""
    checked = 0
    for span in code_spans(path.read_text()):
        key = span.split("=", 1)[0].strip()
        if not re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)+", key):
            continue
        parts = key.split(".")
        if parts[-1] in FILE_SUFFIXES or parts[0] not in {*SECTION_KEYS, "checks", *VALUES}:
            continue
        checked += 1
        assert config_key_exists(parts) or values_key_exists(parts), f"{path.name}: `{span}` names no key"
    if path.parent.name == "docs":
        assert checked > 5


# Docs that show their configuration as an agent.toml excerpt, for the reader to copy.
DOCS_WITH_TOML = {"PRODUCTION.md"}


@pytest.mark.parametrize("path", ALL_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_toml_examples_are_valid_config(path: Path):
    blocks = [body for language, body in fenced_blocks(path.read_text()) if language == "toml"]
    if path.name in DOCS_WITH_TOML:
        assert blocks, f"{path.name}: no TOML config block"
    for body in blocks:
        table = tomllib.loads(body)
        assert table, f"{path.name}: an empty TOML block"
        build_config(table, {"DATABASE_URL": "postgresql://u:p@db:5432/app"}, "docs")


@pytest.mark.parametrize("path", SHIPPING_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_yaml_examples_are_valid(path: Path):
    """Kubernetes objects validate against the schemas; chart values files render."""
    for language, body in fenced_blocks(path.read_text()):
        if language != "yaml":
            continue
        doc = yaml.safe_load(body)
        if not isinstance(doc, dict):
            continue
        if "apiVersion" in doc and "kind" in doc:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        elif "values" in body.splitlines()[0] or {"app", "agent"} & set(doc):
            assert set(doc) <= set(VALUES), f"{path.name}: not chart values: {sorted(set(doc) - set(VALUES))}"
            assert render(doc), path.name  # the schema and the templates accept it


def test_production_checklist_covers_the_seed():
    text = (REPO_ROOT / "docs" / "PRODUCTION.md").read_text()
    checklist = text[text.index("## Deployment checklist") :]
    items = re.findall(r"^- \[ \] (.+(?:\n {6}.+)*)", checklist, re.MULTILINE)
    assert len(items) >= 11
    # The seed's items, each restated for the agent.
    for topic in ("check-config", "./scripts/test.sh", "/health/ready", "JSON", "error_id", "Security headers",
                  "INFO", "cors.allowed_origins", "database URL", "pools", "alert"):  # fmt: skip
        assert any(topic in item for item in items), topic
