"""A config file that holds a secret and is readable by group or others gets one warning line.

The decision is pure (path, mode, loaded config); the CLI stats the file and prints or logs it
(tests/test_cli.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, load_config, readable_secret_warning
from tests.support.agent import to_toml

PASSWORD = "Exp-Pw-3b9d2e"
TOKEN = "exp-admin-token-77c1"


def load(tmp_path: Path, table: dict[str, Any], environ: dict[str, str] | None = None) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(table))
    return load_config(path, environ or {})


@pytest.mark.parametrize("mode", [0o100644, 0o100640, 0o100604, 0o100444, 0o100660, 0o100777], ids=oct)
def test_a_token_in_a_file_others_can_read_is_named_with_the_mode(tmp_path: Path, mode: int) -> None:
    config = load(tmp_path, {"admin": {"token": TOKEN}})
    warning = readable_secret_warning("agent.toml", mode, config)
    assert warning is not None
    text = str(warning)
    assert text == (
        f"config file agent.toml holds a secret (admin.token) and is readable by group/others (mode {mode & 0o7777:04o})"
    )
    assert TOKEN not in text and "\n" not in text


@pytest.mark.parametrize("mode", [0o100600, 0o100400, 0o100700, 0o100000], ids=oct)
def test_a_private_file_gets_no_warning(tmp_path: Path, mode: int) -> None:
    config = load(tmp_path, {"admin": {"token": TOKEN}})
    assert readable_secret_warning("agent.toml", mode, config) is None


def test_a_dsn_with_a_password_counts_one_without_does_not(tmp_path: Path) -> None:
    with_password = load(tmp_path, {"checks": {"database": {"dsn": f"postgresql+asyncpg://app:{PASSWORD}@db/app"}}})
    warning = readable_secret_warning("/etc/agent.toml", 0o644, with_password)
    assert warning is not None and "(checks.database.dsn)" in str(warning) and PASSWORD not in str(warning)
    query_password = load(tmp_path, {"checks": {"db": {"type": "postgres", "dsn": f"postgresql://db/app?password={PASSWORD}"}}})
    assert readable_secret_warning("agent.toml", 0o644, query_password) is not None
    without = load(tmp_path, {"checks": {"database": {"dsn": "postgresql://app@db/app"}}})
    assert readable_secret_warning("agent.toml", 0o644, without) is None


def test_every_secret_key_is_named(tmp_path: Path) -> None:
    table = {
        "admin": {"token": TOKEN},
        "checks": {
            "database": {"dsn": f"postgresql://app:{PASSWORD}@db/app"},
            "replica": {"type": "postgres", "dsn": f"postgresql://r:{PASSWORD}@r/app"},
        },
    }
    warning = readable_secret_warning("agent.toml", 0o644, load(tmp_path, table))
    assert warning is not None
    assert warning.keys == ("admin.token", "checks.database.dsn", "checks.replica.dsn")


def test_secrets_from_the_environment_are_not_the_files(tmp_path: Path) -> None:
    environ = {
        "AGENT_ADMIN_TOKEN": TOKEN,
        "DATABASE_URL": f"postgresql://app:{PASSWORD}@db/app",
        "SIDECAR_TOKEN": TOKEN,
    }
    config = load(tmp_path, {"admin": {"token_env": "SIDECAR_TOKEN"}, "checks": {"database": {"critical": True}}}, environ)
    assert config.admin.token.reveal() == TOKEN
    assert readable_secret_warning("agent.toml", 0o644, config) is None
    assert readable_secret_warning("defaults", 0o644, load_config(None, environ)) is None


def test_a_secret_the_environment_overrides_is_still_in_the_file(tmp_path: Path) -> None:
    config = load(tmp_path, {"admin": {"token": TOKEN}}, {"AGENT_ADMIN_TOKEN": "from-the-environment"})
    assert readable_secret_warning("agent.toml", 0o644, config) is not None


def test_the_record_of_file_secrets_does_not_change_config_equality(tmp_path: Path) -> None:
    from_file = load(tmp_path, {"admin": {"token": TOKEN}})
    from_env = load(tmp_path, {}, {"AGENT_ADMIN_TOKEN": TOKEN})
    assert from_file == from_env
