"""What ``check-config`` prints (``to_public_dict``) is a config file: it loads back to the same config.

Only keys a file may hold are printed (no derived fields such as ``security_headers.headers`` or
an http check's ``unix_socket``), and every secret is masked.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, build_config, load_config, to_public_dict
from tests.support.agent import to_toml

PASSWORD = "Pub-Pw-5c8e1f"
ADMIN_TOKEN = "pub-admin-token-9a7d"

ROUND_TRIPS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "every check type": {
        "upstream": {"url": "http://127.0.0.1:9001/"},
        "health": {"interval_s": 3, "failure_threshold": 4},
        "checks": {
            "database": {"dsn": "postgresql+asyncpg://agent@db:5432/app?sslmode=disable", "expect_primary": False},
            "upstream": {"path": "/ready", "expect_status": "200,204", "interval_s": 1.5},
            "search": {"type": "http", "url": "https://search.internal/ping", "critical": False},
            "cache": {"type": "tcp", "host": "10.0.0.5", "port": 6379, "timeout_s": 0.5},
            "memory": {"type": "memory", "warn_used_ratio": 0.8, "fail_used_ratio": 0.95, "success_threshold": 3},
            "disk": {"path": "/var", "warn_free_ratio": 0.2},
        },
    },
    "custom security headers": {
        "security_headers": {
            "override": True,
            "hsts": "always",
            "hsts_value": "max-age=300",
            "remove": ["Server", "X-Powered-By"],
            "X-Frame-Options": "SAMEORIGIN",
            "content-security-policy": "default-src 'none'",
            "X-DNS-Prefetch-Control": "",
            "X-Custom": "yes",
        },
    },
    "unix socket upstream": {"upstream": {"url": "unix:/run/app.sock"}, "checks": {"upstream": {"path": "/live"}}},
    "tls without files": {
        "server": {"tls": {"min_version": "TLSv1.3", "reload_interval_s": 2}},
        "upstream": {"url": "https://app:8443/", "tls": {"server_name": "app.internal", "verify": False}},
        "checks": {
            "upstream": {"tls": {"server_name": "health.internal"}},
            "search": {"type": "http", "url": "https://search.internal/ping", "tls": {"verify": False}},
        },
    },
    "disabled checks": {
        "checks": {"disk": {"enabled": False}, "cache": {"type": "tcp", "port": 6379, "enabled": False}},
    },
    "every section changed": {
        "server": {"listen": "127.0.0.1:18000", "drain_delay_s": 0, "shutdown_timeout_s": 3},
        "admin": {"enabled": False, "listen": "127.0.0.1:18000", "token_env": "NOT_SET_HERE"},
        "proxy": {"trusted_proxies": ["10.0.0.0/8"], "error_bodies": "passthrough", "max_body_bytes": 0},
        "request_id": {"header": "X-Correlation-ID", "pattern": "^[a-z]{8}$"},
        "cors": {"allowed_origins": ["https://app.example"], "allow_credentials": True, "max_age_s": 0},
        "health": {"path_prefix": "/_health", "public_details": "full", "history_size": 10},
        "metrics": {"path": "/_metrics", "routes": ["/api/v1/plans/{id}"], "max_routes": 5},
        "logging": {"level": "DEBUG", "format": "text", "access_log": False, "skip_paths": []},
    },
}


def load_table(tmp_path: Path, table: dict[str, Any], name: str, environ: dict[str, str] | None = None) -> AgentConfig:
    path = tmp_path / name
    path.write_text(to_toml(table))
    return load_config(path, environ or {})


def same(loaded: AgentConfig, original: AgentConfig) -> bool:
    return dataclasses.replace(loaded, source=original.source) == original


@pytest.mark.parametrize("table", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_the_printed_config_loads_back_as_toml(tmp_path: Path, table: dict[str, Any]) -> None:
    original = load_table(tmp_path, table, "agent.toml")
    printed = to_public_dict(original)
    again = load_table(tmp_path, printed, "printed.toml")
    assert same(again, original)
    assert to_public_dict(again) == printed


@pytest.mark.parametrize("table", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_the_printed_json_loads_back_as_a_table(tmp_path: Path, table: dict[str, Any]) -> None:
    original = load_table(tmp_path, table, "agent.toml")
    printed = json.loads(json.dumps(to_public_dict(original)))
    assert same(build_config(printed, {}, "check-config output"), original)


def test_a_dsn_from_the_environment_is_printed_as_the_checks_dsn(tmp_path: Path) -> None:
    environ = {"DATABASE_URL": "postgres://agent@db/app"}
    original = load_table(tmp_path, {}, "agent.toml", environ)
    printed = to_public_dict(original)
    assert printed["checks"]["database"]["dsn"] == "postgresql://agent@db/app"
    assert same(load_table(tmp_path, printed, "printed.toml", {}), original)


def test_only_file_keys_are_printed() -> None:
    printed = to_public_dict(load_config(None, {"AGENT_UPSTREAM_URL": "unix:/run/app.sock"}))
    assert "headers" not in printed["security_headers"]
    assert printed["security_headers"]["X-Frame-Options"] == "DENY"
    assert "unix_socket" not in printed["checks"]["upstream"]
    assert printed["checks"]["upstream"]["url"] == ""  # derived from upstream.url, which is a socket
    assert "name" not in printed["checks"]["upstream"] and "settings" not in printed["checks"]["upstream"]


def test_secrets_are_masked_and_the_rest_still_loads(tmp_path: Path) -> None:
    table = {
        "admin": {"token": ADMIN_TOKEN},
        "checks": {"database": {"dsn": f"postgresql://agent:{PASSWORD}@db:5432/app?password={PASSWORD}"}},
    }
    printed = to_public_dict(load_table(tmp_path, table, "agent.toml"))
    text = json.dumps(printed)
    assert PASSWORD not in text and ADMIN_TOKEN not in text
    assert printed["admin"]["token"] == "<SECRET>"
    assert printed["checks"]["database"]["dsn"] == "postgresql://agent:<SECRET>@db:5432/app?password=<SECRET>"
    load_table(tmp_path, printed, "printed.toml")


@pytest.mark.parametrize("token", ["tok://user@host", "postgresql://admin@db/x", "a://b:c@d"])
def test_an_admin_token_shaped_like_a_url_is_masked_whole(tmp_path: Path, token: str) -> None:
    printed = to_public_dict(load_table(tmp_path, {"admin": {"token": token}}, "agent.toml"))
    assert printed["admin"]["token"] == "<SECRET>"
