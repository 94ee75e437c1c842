"""``agent.config.load_config``: defaults, env overrides, validation errors, secret masking.

Real TOML files in ``tmp_path``; the environment is always passed explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import string
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import (
    CHECK_TYPES,
    AgentConfig,
    CommonCheckKeys,
    ConfigError,
    DiskSettings,
    HealthConfig,
    HttpSettings,
    PostgresSettings,
    ProxyConfig,
    ServerConfig,
    TcpSettings,
    UpstreamConfig,
    load_config,
    to_public_dict,
)
from tests.support.agent import to_toml

PASSWORD = "Pw-9xQz-secret"
ADMIN_TOKEN = "admintok-4f1e9c0b"


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """load_config(None, ...) looks for ./agent.toml: run every test in an empty directory."""
    monkeypatch.chdir(tmp_path)
    yield


def write(tmp_path: Path, content: dict[str, Any] | str | bytes, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(to_toml(content))
    return path


Content = dict[str, Any] | str | bytes


def load(tmp_path: Path, content: Content | None = None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    path = None if content is None else write(tmp_path, content)
    return load_config(path, dict(environ or {}))


def load_error(tmp_path: Path, content: Content | None = None, environ: Mapping[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, content, environ)
    assert_one_line_naming_key(info.value)
    return info.value


def assert_one_line_naming_key(exc: ConfigError) -> None:
    message = str(exc)
    assert message, "empty ConfigError"
    assert "\n" not in message and "\r" not in message, repr(message)
    assert exc.key, message
    assert message.startswith(exc.key + ": "), message


def check(config: AgentConfig, name: str) -> Any:
    matches = [c for c in config.checks if c.name == name]
    assert matches, f"no check {name!r} in {[c.name for c in config.checks]}"
    return matches[0]


# --- defaults --------------------------------------------------------------------------------


def test_defaults_without_file_and_with_empty_environ() -> None:
    config = load_config(None, {})
    assert config.source == "defaults"
    assert config.server.listen == "0.0.0.0:8000"
    assert config.admin.enabled is True
    assert config.admin.listen == "0.0.0.0:9464"
    assert config.admin.token.reveal() == ""
    assert config.upstream.url == "http://127.0.0.1:8080"
    assert [(c.name, c.type, c.critical) for c in config.checks] == [
        ("upstream", "http", True),
        ("disk", "disk", False),
    ]
    upstream = check(config, "upstream")
    assert isinstance(upstream.settings, HttpSettings)
    assert upstream.settings.url == "http://127.0.0.1:8080/health"
    assert upstream.settings.expect_status == "200-399"
    disk = check(config, "disk")
    assert isinstance(disk.settings, DiskSettings) and disk.settings.path == "/"
    # Unset per-check timings inherit [health].
    for c in config.checks:
        assert (c.interval_s, c.timeout_s, c.failure_threshold, c.success_threshold) == (5.0, 2.0, 2, 1)
    assert config.secrets() == ()


def test_documented_defaults_match_spec() -> None:
    """SPEC §7: the keys tools and docs rely on, with their documented defaults."""
    public = to_public_dict(load_config(None, {}))
    expected = {
        ("server", "listen"): "0.0.0.0:8000",
        ("server", "drain_delay_s"): 5.0,
        ("server", "shutdown_timeout_s"): 25.0,
        ("admin", "enabled"): True,
        ("admin", "listen"): "0.0.0.0:9464",
        ("admin", "token"): "",
        ("upstream", "url"): "http://127.0.0.1:8080",
        ("upstream", "connect_timeout_s"): 2.0,
        ("upstream", "read_timeout_s"): 30.0,
        ("upstream", "max_connections"): 100,
        ("proxy", "max_body_bytes"): 10485760,
        ("proxy", "max_in_flight"): 1000,
        ("proxy", "trusted_proxies"): [],
        ("proxy", "error_bodies"): "augment",
        ("request_id", "header"): "X-Request-ID",
        ("request_id", "pattern"): "^[A-Za-z0-9._:+=/@-]{1,128}$",
        ("security_headers", "override"): False,
        ("security_headers", "hsts"): "https",
        ("cors", "allowed_origins"): [],
        ("cors", "allow_credentials"): False,
        ("health", "path_prefix"): "/health",
        ("health", "public_details"): "status",
        ("health", "max_loop_lag_s"): 1.0,
        ("health", "interval_s"): 5.0,
        ("health", "timeout_s"): 2.0,
        ("health", "failure_threshold"): 2,
        ("health", "success_threshold"): 1,
        ("metrics", "path"): "/metrics",
        ("metrics", "routes"): [],
        ("metrics", "max_routes"): 200,
        ("logging", "level"): "INFO",
        ("logging", "format"): "json",
        ("logging", "file"): "",
        ("logging", "skip_paths"): ["/health/live", "/health/ready", "/health/startup", "/metrics"],
    }
    for (section, key), value in expected.items():
        assert public[section][key] == value, f"{section}.{key}"
    assert set(public["checks"]) == {"upstream", "disk"}
    assert public["checks"]["upstream"]["path"] == "/health"
    assert public["checks"]["disk"]["critical"] is False
    headers = public["security_headers"]  # header names are keys of the section, as in a file
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers.get("X-XSS-Protection", "0") == "0"
    assert "Strict-Transport-Security" not in headers


def test_database_url_adds_a_critical_postgres_check() -> None:
    dsn = f"postgresql://agent:{PASSWORD}@db:5432/app"
    config = load_config(None, {"DATABASE_URL": dsn})
    assert [c.name for c in config.checks] == ["database", "upstream", "disk"]
    database = check(config, "database")
    assert database.type == "postgres"
    assert database.critical is True
    assert isinstance(database.settings, PostgresSettings)
    assert database.settings.dsn.reveal() == dsn
    assert database.settings.expect_primary is True
    assert PASSWORD in config.secrets()


@pytest.mark.parametrize(
    "scheme", ["postgresql://", "postgres://", "postgresql+psycopg2://", "postgresql+asyncpg://", "POSTGRESQL+PSYCOPG://"]
)
def test_sqlalchemy_and_short_schemes_are_normalised(scheme: str, tmp_path: Path) -> None:
    rest = f"agent:{PASSWORD}@db:5432/app?sslmode=disable"
    via_env = load_config(None, {"DATABASE_URL": scheme + rest})
    via_file = load(tmp_path, {"checks": {"database": {"dsn": scheme + rest}}})
    for config in (via_env, via_file):
        assert check(config, "database").settings.dsn.reveal() == "postgresql://" + rest


def test_agent_config_env_and_local_agent_toml_are_found(tmp_path: Path) -> None:
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    path = write(elsewhere, {"upstream": {"url": "http://127.0.0.1:9001"}})
    assert load_config(None, {"AGENT_CONFIG": str(path)}).upstream.url == "http://127.0.0.1:9001"
    assert load_config(None, {"AGENT_CONFIG": str(path)}).source == str(path)
    # ./agent.toml (the cwd is tmp_path) is used when nothing else is given
    write(tmp_path, {"upstream": {"url": "http://127.0.0.1:9002"}})
    assert load_config(None, {}).upstream.url == "http://127.0.0.1:9002"
    # an explicit path wins over $AGENT_CONFIG
    other = write(elsewhere, {"upstream": {"url": "http://127.0.0.1:9003"}}, name="other.toml")
    assert load_config(other, {"AGENT_CONFIG": str(path)}).upstream.url == "http://127.0.0.1:9003"


def test_file_values_are_used(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {
            "server": {"listen": "127.0.0.1:18000", "drain_delay_s": 0, "shutdown_timeout_s": 3},
            "upstream": {"url": "unix:/run/app.sock", "read_timeout_s": 7.5},
            "health": {"interval_s": 1.5, "failure_threshold": 4},
            "checks": {
                "redis": {"type": "tcp", "host": "10.0.0.5", "port": 6379, "critical": False, "interval_s": 10},
                "mem": {"type": "memory", "warn_used_ratio": 0.8, "fail_used_ratio": 0.95},
                "disk": {"enabled": False},
            },
        },
    )
    assert config.server == ServerConfig(listen="127.0.0.1:18000", drain_delay_s=0.0, shutdown_timeout_s=3.0)
    assert isinstance(config.server.drain_delay_s, float)
    assert config.upstream.read_timeout_s == 7.5
    assert [c.name for c in config.checks] == ["upstream", "redis", "mem"]
    upstream = check(config, "upstream").settings
    assert upstream.unix_socket == "/run/app.sock" and upstream.url == "http://localhost/health"
    redis = check(config, "redis")
    assert redis.settings == TcpSettings(host="10.0.0.5", port=6379)
    assert (redis.critical, redis.interval_s, redis.failure_threshold) == (False, 10.0, 4)
    assert check(config, "mem").interval_s == 1.5


# --- environment overrides -------------------------------------------------------------------


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    file_dsn = "postgresql://file:filepass1@db-file:5432/app"
    env_dsn = f"postgresql+asyncpg://env:{PASSWORD}@db-env:5432/app"
    table = {
        "upstream": {"read_timeout_s": 10.0, "max_connections": 5},
        "admin": {"enabled": True},
        "health": {"public_details": "none"},
        "proxy": {"trusted_proxies": ["10.0.0.0/8"]},
        "cors": {"allowed_origins": ["https://file.example"]},
        "metrics": {"routes": ["/file/{id}"]},
        "security_headers": {"X-Frame-Options": "DENY"},
        "checks": {"database": {"dsn": file_dsn}},
    }
    env = {
        "AGENT_UPSTREAM_READ_TIMEOUT_S": "2.5",
        "AGENT_UPSTREAM_MAX_CONNECTIONS": " 7 ",
        "AGENT_ADMIN_ENABLED": "false",
        "AGENT_HEALTH_PUBLIC_DETAILS": "full",
        "AGENT_PROXY_TRUSTED_PROXIES": "192.168.0.0/16, 10.1.0.0/16",
        "AGENT_CORS_ALLOWED_ORIGINS": '["https://a.example", "https://b.example"]',
        "AGENT_METRICS_ROUTES": "[]",
        "AGENT_CHECKS_DATABASE_DSN": env_dsn,
        "AGENT_SECURITY_HEADERS_X_FRAME_OPTIONS": "SAMEORIGIN",
        "AGENT_SECURITY_HEADERS_X_DNS_PREFETCH_CONTROL": "",
    }
    config = load(tmp_path, table, env)
    assert config.upstream.read_timeout_s == 2.5
    assert config.upstream.max_connections == 7
    assert config.admin.enabled is False
    assert config.health.public_details == "full"
    assert config.proxy.trusted_proxies == ("192.168.0.0/16", "10.1.0.0/16")
    assert config.cors.allowed_origins == ("https://a.example", "https://b.example")
    assert config.metrics.routes == ()
    assert check(config, "database").settings.dsn.reveal() == "postgresql://env:" + PASSWORD + "@db-env:5432/app"
    headers = dict(config.security_headers.headers)
    assert headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "X-DNS-Prefetch-Control" not in headers  # "" removes a header
    # the file still applies where the environment says nothing
    assert config.upstream.connect_timeout_s == 2.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_env_booleans(text: str, expected: bool) -> None:
    assert load_config(None, {"AGENT_ADMIN_ENABLED": text}).admin.enabled is expected


def test_env_float_accepts_integers_and_env_lists_accept_both_forms() -> None:
    config = load_config(
        None,
        {
            "AGENT_SERVER_DRAIN_DELAY_S": "3",
            "AGENT_LOGGING_SKIP_PATHS": "/a, /b,,/c ",
            "AGENT_CORS_ALLOWED_METHODS": '["GET"]',
        },
    )
    assert config.server.drain_delay_s == 3.0 and isinstance(config.server.drain_delay_s, float)
    assert config.logging.skip_paths == ("/a", "/b", "/c")
    assert config.cors.allowed_methods == ("GET",)


def test_env_can_configure_a_check_and_the_admin_token_env() -> None:
    config = load_config(
        None,
        {
            "AGENT_CHECKS_DISK_ENABLED": "false",
            "AGENT_CHECKS_UPSTREAM_PATH": "/ready",
            "AGENT_CHECKS_UPSTREAM_EXPECT_STATUS": "200,204",
            "AGENT_CHECKS_DATABASE_DSN_ENV": "TRACKER_DB",
            "TRACKER_DB": f"postgres://t:{PASSWORD}@db/app",
            "AGENT_ADMIN_TOKEN_ENV": "MY_TOKEN",
            "MY_TOKEN": ADMIN_TOKEN,
        },
    )
    assert [c.name for c in config.checks] == ["database", "upstream"]
    assert check(config, "upstream").settings.url == "http://127.0.0.1:8080/ready"
    assert check(config, "database").settings.dsn.reveal() == f"postgresql://t:{PASSWORD}@db/app"
    assert config.admin.token.reveal() == ADMIN_TOKEN


def test_kubernetes_service_env_vars_are_ignored() -> None:
    k8s = {
        "AGENT_SERVICE_HOST": "10.96.0.12",
        "AGENT_SERVICE_PORT": "8000",
        "AGENT_SERVICE_PORT_HTTP": "8000",
        "AGENT_SERVICE_PORT_ADMIN": "9464",
        "AGENT_PORT": "tcp://10.96.0.12:8000",
        "AGENT_PORT_8000_TCP": "tcp://10.96.0.12:8000",
        "AGENT_PORT_8000_TCP_PROTO": "tcp",
        "AGENT_PORT_8000_TCP_PORT": "8000",
        "AGENT_PORT_8000_TCP_ADDR": "10.96.0.12",
        "AGENT_ADMIN_SERVICE_HOST": "10.96.0.13",
        "AGENT_ADMIN_PORT": "tcp://10.96.0.13:9464",
        "AGENT_UPSTREAM_SERVICE_PORT_HTTP": "80",
        "AGENT_SERVER_PORT_80_UDP_ADDR": "10.96.0.14",
        # other tools sharing the prefix, and the config path itself
        "AGENT_VERSION": "7",
        "AGENT_CONFIG": "",
    }
    assert to_public_dict(load_config(None, k8s)) == to_public_dict(load_config(None, {}))


def test_env_override_for_a_tcp_check_port(tmp_path: Path) -> None:
    config = load(tmp_path, {"checks": {"redis": {"type": "tcp", "port": 1}}}, {"AGENT_CHECKS_REDIS_PORT": "6379"})
    assert check(config, "redis").settings.port == 6379


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"AGENT_UPSTREAM_NOPE": "1"}, "upstream.nope"),
        ({"AGENT_SERVER_LISEN": "127.0.0.1:1"}, "server.lisen"),
        ({"AGENT_UPSTREAM_READ_TIMEOUT_S": "fast"}, "upstream.read_timeout_s"),
        ({"AGENT_UPSTREAM_READ_TIMEOUT_S": "-1"}, "upstream.read_timeout_s"),
        ({"AGENT_UPSTREAM_READ_TIMEOUT_S": "nan"}, "upstream.read_timeout_s"),
        ({"AGENT_UPSTREAM_READ_TIMEOUT_S": "inf"}, "upstream.read_timeout_s"),
        ({"AGENT_UPSTREAM_MAX_CONNECTIONS": "1.5"}, "upstream.max_connections"),
        ({"AGENT_ADMIN_ENABLED": "maybe"}, "admin.enabled"),
        ({"AGENT_PROXY_TRUSTED_PROXIES": '["10.0.0.0/8"'}, "proxy.trusted_proxies"),
        ({"AGENT_PROXY_TRUSTED_PROXIES": "[1, 2]"}, "proxy.trusted_proxies"),
        ({"AGENT_CHECKS_DATABASE_DSN": f"mysql://u:{PASSWORD}@h/db"}, "checks.database.dsn"),
        ({"DATABASE_URL": f"mysql://u:{PASSWORD}@h/db"}, "checks.database.dsn_env"),
        ({"AGENT_CHECKS_X": "1"}, "checks"),
    ],
)
def test_bad_env_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env)
    assert_one_line_naming_key(info.value)
    message = str(info.value)
    assert message.startswith(key), message
    assert PASSWORD not in message


def test_unknown_env_key_mentions_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"AGENT_UPSTREAM_NOPE": "1"})
    assert str(info.value).startswith("upstream.nope")
    assert "AGENT_UPSTREAM_NOPE" in str(info.value)


# --- bad configuration files -----------------------------------------------------------------

BAD_FILES: list[tuple[str, Any, str, tuple[str, ...]]] = [
    # (id, file content, key the message starts with, substrings it must contain)
    ("unknown section", {"sever": {"listen": "0.0.0.0:1"}}, "sever", ()),
    ("section not a table", {"server": "0.0.0.0:1"}, "server", ()),
    ("unknown key", {"server": {"lisen": "0.0.0.0:8000"}}, "server.lisen", ("unknown",)),
    ("string for float", {"upstream": {"read_timeout_s": "30"}}, "upstream.read_timeout_s", ("string",)),
    ("bool for int", {"upstream": {"max_connections": True}}, "upstream.max_connections", ("boolean",)),
    ("float for int", {"proxy": {"max_in_flight": 10.5}}, "proxy.max_in_flight", ("float",)),
    ("int for bool", {"admin": {"enabled": 1}}, "admin.enabled", ()),
    ("int for string", {"upstream": {"url": 8080}}, "upstream.url", ()),
    ("not a string array", {"metrics": {"routes": ["/a", 1]}}, "metrics.routes", ()),
    ("string for array", {"proxy": {"trusted_proxies": "10.0.0.0/8"}}, "proxy.trusted_proxies", ()),
    ("negative duration", {"upstream": {"read_timeout_s": -1}}, "upstream.read_timeout_s", ("-1",)),
    ("negative drain", {"server": {"drain_delay_s": -0.5}}, "server.drain_delay_s", ("-0.5",)),
    ("zero interval", {"health": {"interval_s": 0}}, "health.interval_s", ("0",)),
    ("zero threshold", {"health": {"failure_threshold": 0}}, "health.failure_threshold", ()),
    ("negative check interval", {"checks": {"upstream": {"interval_s": -5}}}, "checks.upstream.interval_s", ()),
    ("bad choice", {"health": {"public_details": "all"}}, "health.public_details", ("'all'",)),
    ("bad log level", {"logging": {"level": "verbose"}}, "logging.level", ()),
    ("bad error_bodies", {"proxy": {"error_bodies": "rewrite"}}, "proxy.error_bodies", ()),
    ("listen without port", {"server": {"listen": "localhost"}}, "server.listen", ()),
    ("listen port too big", {"server": {"listen": "127.0.0.1:99999"}}, "server.listen", ()),
    ("listen named port", {"admin": {"listen": "0.0.0.0:http"}}, "admin.listen", ()),
    (
        "same port for admin and main",
        {"server": {"listen": "127.0.0.1:9000"}, "admin": {"listen": "0.0.0.0:9000"}},
        "admin.listen",
        (),
    ),
    ("bad upstream url", {"upstream": {"url": "ftp://127.0.0.1:21"}}, "upstream.url", ()),
    ("bad DSN scheme", {"checks": {"database": {"dsn": f"mysql://u:{PASSWORD}@h/db"}}}, "checks.database.dsn", ("mysql",)),
    ("DSN without scheme", {"checks": {"database": {"dsn": f"host=db password={PASSWORD}"}}}, "checks.database.dsn", ()),
    (
        "DSN with bad port",
        {"checks": {"database": {"dsn": f"postgresql://u:{PASSWORD}@h:99999/db"}}},
        "checks.database.dsn",
        ("bad host or port",),
    ),
    (
        "DSN with non-numeric port",
        {"checks": {"database": {"dsn": f"postgresql://u:{PASSWORD}@h:pg/db"}}},
        "checks.database.dsn",
        (),
    ),
    ("check without type", {"checks": {"x": {"critical": True}}}, "checks.x.type", ("required",)),
    ("unknown check type", {"checks": {"x": {"type": "redis"}}}, "checks.x.type", ("redis",)),
    ("unknown check key", {"checks": {"disk": {"treshold": 1}}}, "checks.disk.treshold", ()),
    ("key of another check type", {"checks": {"disk": {"port": 1}}}, "checks.disk.port", ()),
    ("bad check name", {"checks": {"Bad_Name": {"type": "disk"}}}, "checks.Bad_Name", ()),
    ("check not a table", {"checks": {"x": 1}}, "checks.x", ()),
    ("tcp check without port", {"checks": {"x": {"type": "tcp", "host": "db"}}}, "checks.x.port", ()),
    ("tcp port out of range", {"checks": {"x": {"type": "tcp", "port": 70000}}}, "checks.x.port", ()),
    ("bad expect_status", {"checks": {"upstream": {"expect_status": "ok"}}}, "checks.upstream.expect_status", ()),
    ("status out of range", {"checks": {"upstream": {"expect_status": "200-700"}}}, "checks.upstream.expect_status", ()),
    (
        "wildcard origin with credentials",
        {"cors": {"allowed_origins": ["*"], "allow_credentials": True}},
        "cors.allow_credentials",
        ("*",),
    ),
    ("bad CIDR", {"proxy": {"trusted_proxies": ["10.0.0.0/8", "10.0.0.0/33"]}}, "proxy.trusted_proxies[1]", ()),
    ("CIDR garbage", {"proxy": {"trusted_proxies": ["localhost"]}}, "proxy.trusted_proxies[0]", ()),
    ("invalid regex", {"request_id": {"pattern": "^([A-Z]+$"}}, "request_id.pattern", ()),
    ("bad request id header", {"request_id": {"header": "X Request ID"}}, "request_id.header", ()),
    ("header value with newline", {"security_headers": {"X-Test": "a\r\nSet-Cookie: x=1"}}, "security_headers.X-Test", ()),
    ("header value not a string", {"security_headers": {"X-Test": 1}}, "security_headers.X-Test", ()),
    ("bad header name", {"security_headers": {"X Test": "1"}}, "security_headers.X Test", ()),
    ("bad path prefix", {"health": {"path_prefix": "health/"}}, "health.path_prefix", ()),
    ("log file in missing dir", {"logging": {"file": "/nonexistent-dir-xyz/agent.log"}}, "logging.file", ()),
    (
        "explicit database check without DSN",
        {"checks": {"database": {"critical": True}}},
        "checks.database.dsn",
        ("DATABASE_URL",),
    ),
    (
        "disk fail ratio above warn ratio",
        {"checks": {"disk": {"warn_free_ratio": 0.05, "fail_free_ratio": 0.1}}},
        "checks.disk.fail_free_ratio",
        (),
    ),
    ("ratio above 1", {"checks": {"disk": {"warn_free_ratio": 1.5}}}, "checks.disk.warn_free_ratio", ()),
    (
        "memory fail ratio below warn ratio",
        {"checks": {"mem": {"type": "memory", "warn_used_ratio": 0.9, "fail_used_ratio": 0.5}}},
        "checks.mem.fail_used_ratio",
        (),
    ),
    ("NaN float", "[upstream]\nread_timeout_s = nan\n", "upstream.read_timeout_s", ("finite",)),
    ("inf float", "[upstream]\nconnect_timeout_s = inf\n", "upstream.connect_timeout_s", ("finite",)),
    ("-inf float", "[server]\ndrain_delay_s = -inf\n", "server.drain_delay_s", ()),
    ("NaN ratio", "[checks.disk]\nwarn_free_ratio = nan\n", "checks.disk.warn_free_ratio", ()),
    ("invalid TOML", "[server\nlisten = '0.0.0.0:8000'\n", "config", ("TOML",)),
    ("duplicate key", "[server]\nlisten = 'a:1'\nlisten = 'b:2'\n", "config", ()),
    ("non-UTF-8 file", b'[upstream]\nurl = "http://caf\xe9:8080"\n', "config", ("UTF-8",)),
]


@pytest.mark.parametrize(("content", "key", "contains"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_config_file_is_one_line_error_naming_the_key(
    tmp_path: Path, content: Any, key: str, contains: tuple[str, ...]
) -> None:
    error = load_error(tmp_path, content)
    message = str(error)
    assert message.startswith(key + ":"), message
    for text in contains:
        assert text in message, message
    assert PASSWORD not in message


def test_negative_duration_message_is_exact_enough(tmp_path: Path) -> None:
    message = str(load_error(tmp_path, {"upstream": {"read_timeout_s": -1}}))
    assert message.startswith("upstream.read_timeout_s: ")
    assert "-1" in message
    assert "> 0" in message


def test_bad_dsn_scheme_never_shows_the_password(tmp_path: Path) -> None:
    message = str(load_error(tmp_path, {"checks": {"database": {"dsn": "mysql://u:pw@h/db"}}}))
    assert message.startswith("checks.database.dsn: ")
    assert "u:pw" not in message and ":pw@" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml", {})
    assert_one_line_naming_key(info.value)
    assert str(info.value).startswith("config: ")
    assert "nope.toml" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, {})
    assert_one_line_naming_key(info.value)
    assert str(info.value).startswith("config: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"server": {"listen": "0.0.0.0:1"}})
    path.chmod(0)
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path, {})
    finally:
        path.chmod(0o600)
    assert_one_line_naming_key(info.value)
    assert str(info.value).startswith("config: ")


def test_missing_agent_config_path_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"AGENT_CONFIG": "/nonexistent-dir-xyz/agent.toml"})
    assert str(info.value).startswith("config: ")


def test_explicit_database_check_with_dsn_env_set_is_fine(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {"checks": {"database": {"dsn_env": "TRACKER_DSN", "expect_primary": False}}},
        {"TRACKER_DSN": f"postgresql://u:{PASSWORD}@db/app"},
    )
    database = check(config, "database")
    assert database.settings.expect_primary is False
    assert database.settings.dsn.reveal().endswith("@db/app")


def test_disabled_database_check_needs_no_dsn(tmp_path: Path) -> None:
    config = load(tmp_path, {"checks": {"database": {"enabled": False}}})
    assert "database" not in [c.name for c in config.checks]


def test_huge_integer_for_a_float_is_a_config_error(tmp_path: Path) -> None:
    load_error(tmp_path, "[upstream]\nread_timeout_s = 1" + "0" * 400 + "\n")


@pytest.mark.parametrize("pattern", ["a{4294967296}", "(" * 3000 + ")" * 3000], ids=["huge-repeat", "deep-nesting"])
def test_pathological_regex_is_a_config_error(tmp_path: Path, pattern: str) -> None:
    raised: BaseException | None = None
    try:
        load(tmp_path, {"request_id": {"pattern": pattern}})
    except Exception as exc:
        raised = exc if isinstance(exc, ConfigError) else None
        other = f"{type(exc).__name__}: {str(exc)[:100]}"
    if not isinstance(raised, ConfigError):
        pytest.fail(f"expected ConfigError, got {other}", pytrace=False)
    assert str(raised).startswith("request_id.pattern: ")


def test_error_for_a_key_with_a_newline_is_one_line(tmp_path: Path) -> None:
    load_error(tmp_path, '[server]\n"li\\nsten" = "0.0.0.0:1"\n')


def test_security_headers_headers_key_is_not_silently_ignored(tmp_path: Path) -> None:
    load_error(tmp_path, {"security_headers": {"headers": "X-Test: 1"}})


def test_short_http_upstream_url_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, {"upstream": {"url": "http://x"}}).upstream.url == "http://x"


# --- secrets in printed config ---------------------------------------------------------------


def public_text(config: AgentConfig) -> str:
    return json.dumps(to_public_dict(config))


def test_public_dict_masks_dsn_password_and_admin_token(tmp_path: Path) -> None:
    dsn = f"postgresql+asyncpg://agent:{PASSWORD}@db.internal:5432/app?sslmode=require"
    config = load(tmp_path, {"admin": {"token": ADMIN_TOKEN}, "checks": {"database": {"dsn": dsn}}})
    public = to_public_dict(config)
    text = json.dumps(public)
    assert PASSWORD not in text
    assert ADMIN_TOKEN not in text
    assert public["admin"]["token"] == "<SECRET>"
    assert public["checks"]["database"]["dsn"] == "postgresql://agent:<SECRET>@db.internal:5432/app?sslmode=require"
    assert PASSWORD not in repr(config) and ADMIN_TOKEN not in repr(config)
    assert PASSWORD not in str(config) and ADMIN_TOKEN not in str(config)
    # the secrets are still there for the code that needs them
    assert config.admin.token.reveal() == ADMIN_TOKEN
    assert set(config.secrets()) >= {ADMIN_TOKEN, PASSWORD}


def test_public_dict_masks_token_from_token_env_and_dsn_from_env(tmp_path: Path) -> None:
    env = {
        "SIDECAR_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": f"postgresql://agent:{PASSWORD}@db/app?password={PASSWORD}",
    }
    config = load(tmp_path, {"admin": {"token_env": "SIDECAR_TOKEN"}}, env)
    assert config.admin.token.reveal() == ADMIN_TOKEN
    public = to_public_dict(config)
    text = json.dumps(public)
    assert ADMIN_TOKEN not in text and PASSWORD not in text
    assert public["admin"]["token"] == "<SECRET>"
    assert public["admin"]["token_env"] == "SIDECAR_TOKEN"
    assert public["checks"]["database"]["dsn"] == "postgresql://agent:<SECRET>@db/app?password=<SECRET>"


def test_public_dict_masks_env_override_dsn(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        {"checks": {"database": {"dsn": "postgresql://a:filepw123@h/db"}}},
        {"AGENT_CHECKS_DATABASE_DSN": f"postgres://b:{PASSWORD}@h2/db", "AGENT_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    text = public_text(config)
    assert PASSWORD not in text and ADMIN_TOKEN not in text and "filepw123" not in text
    assert "postgresql://b:<SECRET>@h2/db" in text


def test_public_dict_without_secrets_shows_empty_token() -> None:
    public = to_public_dict(load_config(None, {}))
    assert public["admin"]["token"] == ""
    json.dumps(public, allow_nan=False)


def test_public_dict_masks_a_password_with_spaces(tmp_path: Path) -> None:
    config = load(tmp_path, {}, {"DATABASE_URL": "postgresql://agent:correct horse staple@db/app"})
    assert "horse" not in public_text(config)


# --- property: load_config never fails with anything but ConfigError -------------------------

_KEY_ALPHABET = string.ascii_lowercase + string.digits + "_-"
_junk_keys = st.sampled_from(["nope", "lisen", "timeout", "URL", "Listen", "x", "type_", "headers"]) | st.text(
    _KEY_ALPHABET, min_size=1, max_size=10
)
_text = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",), exclude_characters="\x7f"), max_size=20)
_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=70000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=2),
    _text,
    st.sampled_from(
        [
            "0.0.0.0:8000",
            "127.0.0.1:0",
            "[::1]:9000",
            ":8001",
            "http://127.0.0.1:1",
            "unix:/x.sock",
            "augment",
            "passthrough",
            "none",
            "status",
            "full",
            "200-399",
            "200,204",
            "10.0.0.0/8",
            "postgresql://u:Pw-9xQz-secret@h:5432/db",
            "mysql://u:Pw-9xQz-secret@h/db",
            "postgresql://u:Pw-9xQz-secret@h:x/db",
            "postgres",
            "tcp",
            "http",
            "disk",
            "memory",
            "/",
        ]
    ),
)
_values = _scalars | st.lists(_scalars, max_size=3) | st.lists(_text, max_size=3)


def _section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | _junk_keys, _values, max_size=4)


def _fields(cls: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


_CHECK_KEYS = sorted({*_fields(CommonCheckKeys), *(k for cls in CHECK_TYPES.values() for k in _fields(cls))})
_check_table = st.dictionaries(
    st.sampled_from(_CHECK_KEYS) | _junk_keys,
    _values | st.sampled_from(sorted(CHECK_TYPES)),
    max_size=5,
)
_configs = st.fixed_dictionaries(
    {},
    optional={
        "server": _section(_fields(ServerConfig)),
        "upstream": _section(_fields(UpstreamConfig)),
        "proxy": _section(_fields(ProxyConfig)),
        "health": _section(_fields(HealthConfig)),
        "checks": st.dictionaries(
            st.sampled_from(["database", "upstream", "disk", "redis", "mem", "Bad_Name"]) | _junk_keys,
            _check_table,
            max_size=3,
        ),
        "nonsense": _section(["a"]),
    },
)
_environs = st.sampled_from(
    [{}, {"DATABASE_URL": "postgresql+asyncpg://u:Pw-9xQz-secret@db/app"}, {"DATABASE_URL": "mysql://u:Pw-9xQz-secret@db/app"}]
)
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*(\[\d+\])?( \([^()]*\))?: \S")


@pytest.fixture(scope="module")
def property_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("property")


@settings(derandomize=True, max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=_configs, environ=_environs)
def test_load_config_only_ever_raises_config_error(property_dir: Path, table: dict[str, Any], environ: dict[str, str]) -> None:
    path = property_dir / "agent.toml"
    text = to_toml(table)
    tomllib.loads(text)  # the generated file is valid TOML, so every failure below is the loader's
    path.write_text(text, encoding="utf-8")
    try:
        config = load_config(path, environ)
    except ConfigError as exc:
        message = str(exc)
        assert _KEY_RE.match(message), message
        assert "\n" not in message
        assert message.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0] in {*table, "checks"}, message
        if ".dsn" in exc.key:  # (a DSN pasted into another key is echoed as that key's bad value)
            assert "Pw-9xQz-secret" not in message, message
    else:
        assert isinstance(config, AgentConfig)
        public = json.dumps(to_public_dict(config), allow_nan=False)
        assert "Pw-9xQz-secret" not in public
