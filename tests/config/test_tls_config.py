"""``[server.tls]``, ``[admin.tls]``, ``[upstream.tls]`` and ``[checks.NAME.tls]``: nested tables read
from files and ``AGENT_*_TLS_*`` variables, validated at start against real certificates (made by
trustme), printed nested by ``check-config`` so that the output loads back, and a private key
file readable by group/others warned about like a config file holding a secret.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from agent.config import (
    AgentConfig,
    ClientTlsConfig,
    ConfigError,
    HttpSettings,
    ListenerTlsConfig,
    build_config,
    load_config,
    private_key_files,
    readable_secret_files,
    to_public_dict,
)
from agent.config.tls import check_tls_files
from tests.support import REPO_ROOT, environ_without_agent_config
from tests.support.agent import AgentProcess, to_toml
from tests.support.net import free_port


@dataclasses.dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server pair, a client pair, and broken ones; keys are mode 0600."""

    dir: Path
    ca: str
    cert: str
    key: str
    other_key: str
    client_cert: str
    client_key: str
    expired_cert: str
    expired_key: str
    encrypted_key: str
    not_pem: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("app.internal", "127.0.0.1")
    other = ca.issue_cert("other.internal")
    client = ca.issue_cert("client@agent")
    expired = ca.issue_cert("old.internal", not_after=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    files = {
        "ca": ca.cert_pem.bytes(),
        "cert": b"".join(blob.bytes() for blob in server.cert_chain_pems),
        "key": server.private_key_pem.bytes(),
        "other_key": other.private_key_pem.bytes(),
        "client_cert": client.cert_chain_pems[0].bytes(),
        "client_key": client.private_key_pem.bytes(),
        "expired_cert": expired.cert_chain_pems[0].bytes(),
        "expired_key": expired.private_key_pem.bytes(),
        "encrypted_key": serialization.load_pem_private_key(server.private_key_pem.bytes(), None).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        ),
        "not_pem": b"this is not a certificate\n",
    }
    for name, data in files.items():
        path = root / f"{name}.pem"
        path.write_bytes(data)
        path.chmod(0o600 if "key" in name else 0o644)
    return Pki(root, **{name: str(root / f"{name}.pem") for name in files})


def load(tmp_path: Path, table: dict[str, Any], environ: dict[str, str] | None = None) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(table))
    return load_config(path, environ or {})


def refused(tmp_path: Path, table: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, table, environ)
    return str(caught.value)


def http_check(config: AgentConfig, name: str) -> HttpSettings:
    settings = next(check.settings for check in config.checks if check.name == name)
    assert isinstance(settings, HttpSettings)
    return settings


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = environ_without_agent_config()
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


# --------------------------------------------------------------------------- nested tables
def test_tls_tables_are_read_from_the_file(tmp_path: Path, pki: Pki) -> None:
    config = load(
        tmp_path,
        {
            "server": {"tls": {"cert_file": pki.cert, "key_file": pki.key, "client_ca_file": pki.ca, "min_version": "TLSv1.3"}},
            "admin": {"tls": {"cert_file": pki.cert, "key_file": pki.key, "reload_interval_s": 2}},
            "upstream": {
                "url": "https://127.0.0.1:8443",
                "tls": {
                    "ca_file": pki.ca,
                    "server_name": "app.internal",
                    "cert_file": pki.client_cert,
                    "key_file": pki.client_key,
                },
            },
        },
    )
    assert config.server.tls == ListenerTlsConfig(
        cert_file=pki.cert, key_file=pki.key, client_ca_file=pki.ca, min_version="TLSv1.3"
    )
    assert config.server.tls.enabled and config.server.tls.client_verification == "require"
    assert config.admin.tls.reload_interval_s == 2.0 and config.admin.tls.client_verification == ""
    assert config.upstream.url == "https://127.0.0.1:8443"
    assert config.upstream.tls == ClientTlsConfig(
        ca_file=pki.ca, server_name="app.internal", cert_file=pki.client_cert, key_file=pki.client_key
    )


def test_without_tls_tables_everything_is_plain() -> None:
    config = load_config(None, {})
    assert config.server.tls == ListenerTlsConfig() and not config.server.tls.enabled
    assert config.admin.tls == ListenerTlsConfig() and config.upstream.tls == ClientTlsConfig()
    assert config.upstream.tls.verify is True


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"server": {"tls": {"cert_fil": "x"}}}, "server.tls.cert_fil: unknown key (known: cert_file, client_auth, "),
        ({"admin": {"tls": {"verify": False}}}, "admin.tls.verify: unknown key"),
        ({"upstream": {"tls": {"client_ca_file": "x"}}}, "upstream.tls.client_ca_file: unknown key"),
        ({"checks": {"upstream": {"tls": {"ca_fil": "x"}}}}, "checks.upstream.tls.ca_fil: unknown key"),
        ({"checks": {"cache": {"type": "tcp", "port": 6379, "tls": {"ca_file": "x"}}}}, "checks.cache.tls: unknown key"),
        ({"server": {"tls": "on"}}, "server.tls: must be a table, got string"),
        ({"upstream": {"tls": True}}, "upstream.tls: must be a table, got boolean"),
        ({"checks": {"upstream": {"tls": ["x"]}}}, "checks.upstream.tls: must be a table, got array"),
        ({"upstream": {"tls": {"verify": "no"}}}, "upstream.tls.verify: must be a boolean, got string"),
        ({"server": {"tls": {"min_version": "TLSv1.1"}}}, "server.tls.min_version: must be one of 'TLSv1.2', 'TLSv1.3'"),
        ({"server": {"tls": {"client_auth": "always"}}}, "server.tls.client_auth: must be one of '', 'require', 'optional'"),
        ({"admin": {"tls": {"reload_interval_s": 0}}}, "admin.tls.reload_interval_s: must be > 0, got 0.0"),
        ({"server": {"tls": {"cert_file": 1}}}, "server.tls.cert_file: must be a string, got integer"),
    ],
)
def test_bad_keys_and_values_in_tls_tables_name_the_full_key(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    assert refused(tmp_path, table).startswith(message)


# --------------------------------------------------------------------------- environment
def test_env_overrides_reach_nested_keys(tmp_path: Path, pki: Pki) -> None:
    environ = {
        "AGENT_SERVER_TLS_CERT_FILE": pki.cert,
        "AGENT_SERVER_TLS_KEY_FILE": pki.key,
        "AGENT_SERVER_TLS_CLIENT_CA_FILE": pki.ca,
        "AGENT_SERVER_TLS_CLIENT_AUTH": "optional",
        "AGENT_ADMIN_TLS_MIN_VERSION": "TLSv1.3",
        "AGENT_ADMIN_TLS_RELOAD_INTERVAL_S": "30",
        "AGENT_UPSTREAM_URL": "https://app:8443",
        "AGENT_UPSTREAM_TLS_VERIFY": "false",
        "AGENT_CHECKS_UPSTREAM_TLS_CA_FILE": pki.ca,
        "AGENT_CHECKS_MY_SVC_TLS_SERVER_NAME": "svc.internal",
    }
    table = {"upstream": {"tls": {"server_name": "from-the-file"}}, "checks": {"my_svc": {"type": "http", "url": "https://svc/"}}}
    config = load(tmp_path, table, environ)
    assert config.server.tls == ListenerTlsConfig(pki.cert, pki.key, pki.ca, "optional")
    assert config.admin.tls.min_version == "TLSv1.3" and config.admin.tls.reload_interval_s == 30.0
    assert config.upstream.tls == ClientTlsConfig(server_name="from-the-file", verify=False)
    assert http_check(config, "upstream").tls == ClientTlsConfig(ca_file=pki.ca, server_name="from-the-file", verify=False)
    assert http_check(config, "my_svc").tls == ClientTlsConfig(server_name="svc.internal")


def test_the_environment_wins_over_the_files_nested_key(tmp_path: Path) -> None:
    config = load(tmp_path, {"upstream": {"tls": {"verify": False}}}, {"AGENT_UPSTREAM_TLS_VERIFY": "1"})
    assert config.upstream.tls.verify is True


@pytest.mark.parametrize(
    ("environ", "table", "message"),
    [
        (
            {"AGENT_SERVER_TLS_CERT_FIL": "x"},
            {},
            "server.tls_cert_fil (environment variable AGENT_SERVER_TLS_CERT_FIL): unknown key",
        ),
        ({"AGENT_SERVER_TLS": "x"}, {}, "server.tls (environment variable AGENT_SERVER_TLS): unknown key"),
        ({"AGENT_UPSTREAM_TLS_VERIFY": "maybe"}, {}, "upstream.tls.verify (environment variable AGENT_UPSTREAM_TLS_VERIFY): "),
        ({"AGENT_ADMIN_TLS_RELOAD_INTERVAL_S": "soon"}, {}, "admin.tls.reload_interval_s (environment variable "),
        ({"AGENT_SERVER_TLS_KEY_FILE": "k.pem"}, {"server": {"tls": "x"}}, "server.tls: is not a table, cannot apply "),
    ],
)
def test_bad_tls_environment_variables_name_the_key(
    tmp_path: Path, environ: dict[str, str], table: dict[str, Any], message: str
) -> None:
    assert refused(tmp_path, table, environ).startswith(message)


# --------------------------------------------------------------------------- https upstream, checks
def test_the_upstream_check_follows_an_https_upstream_and_its_tls(tmp_path: Path, pki: Pki) -> None:
    upstream_tls = {"ca_file": pki.ca, "server_name": "app.internal", "cert_file": pki.client_cert, "key_file": pki.client_key}
    config = load(
        tmp_path,
        {
            "upstream": {"url": "https://127.0.0.1:8443/", "tls": upstream_tls},
            "checks": {
                "ready": {"type": "http", "path": "/ready"},
                "named": {"type": "http", "path": "/live", "tls": {"server_name": "live.internal"}},
                "elsewhere": {"type": "http", "url": "https://search.internal/ping"},
            },
        },
    )
    assert http_check(config, "upstream") == HttpSettings(url="https://127.0.0.1:8443/health", tls=config.upstream.tls)
    assert http_check(config, "ready") == HttpSettings(url="https://127.0.0.1:8443/ready", path="/ready", tls=config.upstream.tls)
    assert http_check(config, "named").tls == dataclasses.replace(config.upstream.tls, server_name="live.internal")
    assert http_check(config, "elsewhere").tls == ClientTlsConfig()


def test_the_upstream_checks_own_tls_keys_win(tmp_path: Path, pki: Pki) -> None:
    table = {
        "upstream": {"url": "https://app:8443", "tls": {"ca_file": pki.ca, "server_name": "app.internal"}},
        "checks": {"upstream": {"tls": {"ca_file": "", "verify": False}}},
    }
    expected = HttpSettings(url="https://app:8443/health", tls=ClientTlsConfig(server_name="app.internal", verify=False))
    assert http_check(load(tmp_path, table), "upstream") == expected


def test_an_http_check_with_its_own_https_url_uses_only_its_own_tls(tmp_path: Path, pki: Pki) -> None:
    table = {
        "upstream": {"url": "https://app:8443", "tls": {"ca_file": pki.ca}},
        "checks": {"upstream": {"url": "https://app:9443/health", "tls": {"server_name": "admin.internal"}}},
    }
    expected = HttpSettings(url="https://app:9443/health", tls=ClientTlsConfig(server_name="admin.internal"))
    assert http_check(load(tmp_path, table), "upstream") == expected


@pytest.mark.parametrize("url", ["https://app:8443", "https://[::1]:8443/base", "http://app:8080", "unix:/run/app.sock"])
def test_upstream_url_may_be_https(tmp_path: Path, url: str) -> None:
    assert load(tmp_path, {"upstream": {"url": url}}).upstream.url == url


@pytest.mark.parametrize("url", ["ftp://app", "https://", "app:8443", "https://app:99999"])
def test_other_upstream_urls_are_refused(tmp_path: Path, url: str) -> None:
    message = refused(tmp_path, {"upstream": {"url": url}})
    assert message.startswith('upstream.url: must be "http://host:port", "https://host:port" or "unix:/path"')


# --------------------------------------------------------------------------- validation
def listener(pki: Pki, **keys: str) -> dict[str, Any]:
    return {"server": {"tls": {"cert_file": pki.cert, "key_file": pki.key, **keys}}}


# (id, table built from the PKI, the message's start)
INVALID: list[tuple[str, Callable[[Pki], dict[str, Any]], str]] = [
    (
        "key without cert",
        lambda p: {"server": {"tls": {"key_file": p.key}}},
        "server.tls.cert_file: is required when key_file is set",
    ),
    (
        "ca without cert",
        lambda p: {"server": {"tls": {"client_ca_file": p.ca}}},
        "server.tls.cert_file: is required when client_ca_file",
    ),
    (
        "cert without key",
        lambda p: {"server": {"tls": {"cert_file": p.cert}}},
        "server.tls.key_file: is required when cert_file is set",
    ),
    ("client_auth alone", lambda p: listener(p, client_auth="require"), "server.tls.client_auth: needs client_ca_file"),
    (
        "client_auth, no cert",
        lambda p: {"admin": {"tls": {"client_auth": "optional"}}},
        "admin.tls.client_auth: needs client_ca_file",
    ),
    ("missing cert", lambda p: listener(p, cert_file=p.cert + ".gone"), "server.tls.cert_file: cannot read '"),
    ("missing key", lambda p: listener(p, key_file=str(p.dir / "nope.pem")), "server.tls.key_file: cannot read '"),
    ("cert is a directory", lambda p: listener(p, cert_file=str(p.dir)), "server.tls.cert_file: not a regular file: '"),
    ("cert not PEM", lambda p: listener(p, cert_file=p.not_pem), "server.tls.cert_file: not a PEM certificate: '"),
    ("cert is the key", lambda p: listener(p, cert_file=p.key), "server.tls.cert_file: not a PEM certificate: '"),
    ("key not PEM", lambda p: listener(p, key_file=p.not_pem), "server.tls.key_file: no PEM private key in '"),
    ("key is the cert", lambda p: listener(p, key_file=p.cert), "server.tls.key_file: no PEM private key in '"),
    ("key mismatch", lambda p: listener(p, key_file=p.other_key), "server.tls.key_file: does not match server.tls.cert_file"),
    ("key encrypted", lambda p: listener(p, key_file=p.encrypted_key), "server.tls.key_file: is encrypted"),
    (
        "cert expired",
        lambda p: listener(p, cert_file=p.expired_cert, key_file=p.expired_key),
        "server.tls.cert_file: expired on 2020-01-01 00:00:00 UTC",
    ),
    (
        "client CA not PEM",
        lambda p: listener(p, client_ca_file=p.not_pem),
        "server.tls.client_ca_file: no CA certificate could be loaded",
    ),
    ("client CA missing", lambda p: listener(p, client_ca_file=p.ca + ".gone"), "server.tls.client_ca_file: cannot read '"),
    (
        "admin mismatch",
        lambda p: {"admin": {"tls": {"cert_file": p.cert, "key_file": p.client_key}}},
        "admin.tls.key_file: does not match admin.tls.cert_file",
    ),
    (
        "upstream CA not PEM",
        lambda p: {"upstream": {"tls": {"ca_file": p.not_pem}}},
        "upstream.tls.ca_file: no CA certificate could be",
    ),
    (
        "upstream CA missing",
        lambda p: {"upstream": {"tls": {"ca_file": "/nonexistent/ca.pem"}}},
        "upstream.tls.ca_file: cannot read '/nonexistent/ca.pem': No such file or directory",
    ),
    (
        "upstream cert alone",
        lambda p: {"upstream": {"tls": {"cert_file": p.client_cert}}},
        "upstream.tls.key_file: is required when cert_file",
    ),
    (
        "upstream key alone",
        lambda p: {"upstream": {"tls": {"key_file": p.client_key}}},
        "upstream.tls.cert_file: is required when key_file",
    ),
    (
        "upstream mismatch",
        lambda p: {"upstream": {"tls": {"cert_file": p.client_cert, "key_file": p.key}}},
        "upstream.tls.key_file: does not match upstream.tls.cert_file",
    ),
    (
        "upstream cert expired",
        lambda p: {"upstream": {"tls": {"cert_file": p.expired_cert, "key_file": p.expired_key}}},
        "upstream.tls.cert_file: expired on 2020-01-01",
    ),
    (
        "check CA missing",
        lambda p: {"checks": {"search": {"type": "http", "url": "https://s/", "tls": {"ca_file": p.ca + "x"}}}},
        "checks.search.tls.ca_file: cannot read '",
    ),
    (
        "check cert alone",
        lambda p: {"checks": {"upstream": {"tls": {"cert_file": p.client_cert}}}},
        "checks.upstream.tls.key_file: is required when cert_file",
    ),
    (
        "check key over inherited cert",
        lambda p: {
            "upstream": {"tls": {"cert_file": p.client_cert, "key_file": p.client_key}},
            "checks": {"upstream": {"tls": {"key_file": p.key}}},
        },
        "checks.upstream.tls.key_file: does not match checks.upstream.tls.cert_file",
    ),
]


@pytest.mark.parametrize(("build", "message"), [(b, m) for _, b, m in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_tls_is_refused_naming_the_key(
    tmp_path: Path, pki: Pki, build: Callable[[Pki], dict[str, Any]], message: str
) -> None:
    text = refused(tmp_path, build(pki))
    assert text.startswith(message), text
    assert "\n" not in text and "BEGIN" not in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_is_refused(tmp_path: Path, pki: Pki) -> None:
    key = tmp_path / "key.pem"
    shutil.copy(pki.key, key)
    key.chmod(0)
    assert refused(tmp_path, listener(pki, key_file=str(key))).startswith("server.tls.key_file: cannot read '")


def test_a_valid_configuration_loads_every_file(tmp_path: Path, pki: Pki) -> None:
    table = {
        **listener(pki, client_ca_file=pki.ca, client_auth="optional"),
        "upstream": {
            "url": "https://app:8443",
            "tls": {"ca_file": pki.ca, "cert_file": pki.client_cert, "key_file": pki.client_key},
        },
        "checks": {"search": {"type": "http", "url": "https://s/", "tls": {"ca_file": pki.ca}}},
    }
    assert load(tmp_path, table).server.tls.client_verification == "optional"


def test_verify_false_is_accepted(tmp_path: Path) -> None:
    config = load(tmp_path, {"upstream": {"url": "https://app:8443", "tls": {"verify": False}}})
    assert config.upstream.tls.verify is False


def test_a_disabled_admin_listeners_tls_is_not_checked(tmp_path: Path, pki: Pki) -> None:
    table = {"admin": {"enabled": False, "tls": {"cert_file": pki.cert, "key_file": pki.other_key}}}
    assert load(tmp_path, table).admin.tls.key_file == pki.other_key


def test_expiry_is_measured_against_now(pki: Pki) -> None:
    tls = ListenerTlsConfig(cert_file=pki.cert, key_file=pki.key)
    check_tls_files(tls, "server.tls")
    year_3001 = datetime.datetime(3001, 1, 1, tzinfo=datetime.UTC).timestamp()
    with pytest.raises(ConfigError, match=r"^server\.tls\.cert_file: expired on 3000-01-01 00:00:00 UTC"):
        check_tls_files(tls, "server.tls", now_s=year_3001)


def test_build_config_validates_tls_too(pki: Pki) -> None:
    with pytest.raises(ConfigError, match=r"^server\.tls\.key_file: does not match server\.tls\.cert_file"):
        build_config(listener(pki, key_file=pki.other_key), {}, "table")


# --------------------------------------------------------------------------- the command line
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: listener(p, key_file=p.other_key), "server.tls.key_file: does not match server.tls.cert_file"),
        (lambda p: listener(p, cert_file=p.expired_cert, key_file=p.expired_key), "server.tls.cert_file: expired on 2020-01-01"),
        (lambda p: {"server": {"tls": {"cert_fil": p.cert}}}, "server.tls.cert_fil: unknown key"),
        (lambda p: listener(p, client_auth="require"), "server.tls.client_auth: needs client_ca_file"),
    ],
    ids=["mismatch", "expired", "unknown key", "client_auth"],
)
def test_check_config_exits_2_naming_the_key(
    tmp_path: Path, pki: Pki, build: Callable[[Pki], dict[str, Any]], message: str
) -> None:
    (tmp_path / "agent.toml").write_text(to_toml(build(pki)))
    result = cli("check-config", "-c", "agent.toml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"sidecar-agent: invalid configuration: {message}"), result.stderr
    assert result.stdout == ""


def test_check_config_takes_nested_keys_from_the_environment(tmp_path: Path, pki: Pki) -> None:
    env = {"AGENT_SERVER_TLS_CERT_FILE": pki.cert, "AGENT_SERVER_TLS_KEY_FILE": pki.other_key}
    result = cli("check-config", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "server.tls.key_file: does not match server.tls.cert_file" in result.stderr
    result = cli("check-config", cwd=tmp_path, env={**env, "AGENT_SERVER_TLS_KEY_FILE": pki.key})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server"]["tls"]["cert_file"] == pki.cert


def test_run_exits_2_before_binding_a_port(tmp_path: Path, pki: Pki) -> None:
    port = free_port()
    table = {"server": {"listen": f"127.0.0.1:{port}", "tls": {"cert_file": pki.cert, "key_file": pki.other_key}}}
    (tmp_path / "agent.toml").write_text(to_toml(table))
    result = cli("run", "-c", "agent.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("sidecar-agent: invalid configuration: server.tls.key_file: does not match")
    assert result.stdout == ""  # not even logging was set up


# --------------------------------------------------------------------------- check-config's output
def test_the_printed_config_holds_nested_tables_and_loads_back(tmp_path: Path, pki: Pki) -> None:
    original = load(
        tmp_path,
        {
            **listener(pki, client_ca_file=pki.ca, client_auth="optional", min_version="TLSv1.3"),
            "admin": {"tls": {"cert_file": pki.cert, "key_file": pki.key, "reload_interval_s": 3}},
            "upstream": {"url": "https://127.0.0.1:8443", "tls": {"ca_file": pki.ca, "server_name": "app.internal"}},
            "checks": {
                "upstream": {"tls": {"cert_file": pki.client_cert, "key_file": pki.client_key}},
                "search": {"type": "http", "url": "https://s/", "tls": {"verify": False}},
            },
        },
    )
    printed = to_public_dict(original)
    assert printed["server"]["tls"] == {
        "cert_file": pki.cert,
        "key_file": pki.key,
        "client_ca_file": pki.ca,
        "client_auth": "optional",
        "min_version": "TLSv1.3",
        "reload_interval_s": 10.0,
    }
    assert printed["checks"]["upstream"]["tls"]["ca_file"] == pki.ca  # as it resolved, from [upstream.tls]
    assert printed["checks"]["search"]["tls"]["verify"] is False
    again = load(tmp_path, printed)
    assert dataclasses.replace(again, source=original.source) == original
    assert to_public_dict(again) == printed
    assert dataclasses.replace(build_config(json.loads(json.dumps(printed)), {}, "json"), source=original.source) == original


def test_check_config_output_of_the_defaults_loads_back(tmp_path: Path) -> None:
    result = cli("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["server"]["tls"]["cert_file"] == "" and printed["upstream"]["tls"]["verify"] is True
    assert load(tmp_path, printed) == dataclasses.replace(load_config(None, {}), source=str(tmp_path / "agent.toml"))


# --------------------------------------------------------------------------- readable private keys
def readable_key(tmp_path: Path, source: str, mode: int) -> str:
    key = tmp_path / Path(source).name
    shutil.copy(source, key)
    key.chmod(mode)
    return str(key)


def modes(overrides: dict[str, int]) -> Callable[[str], int | None]:
    return lambda path: overrides.get(path, 0o100600)


def test_private_key_files_names_each_file_once_with_every_key(tmp_path: Path, pki: Pki) -> None:
    config = load(
        tmp_path,
        {
            "server": {"tls": {"cert_file": pki.cert, "key_file": pki.key}},
            "admin": {"tls": {"cert_file": pki.cert, "key_file": pki.key}},
            "upstream": {"tls": {"cert_file": pki.client_cert, "key_file": pki.client_key}},
        },
    )
    assert private_key_files(config) == {
        pki.key: ("server.tls.key_file", "admin.tls.key_file"),
        pki.client_key: ("upstream.tls.key_file", "checks.upstream.tls.key_file"),
    }


@pytest.mark.parametrize("mode", [0o100644, 0o100640, 0o100604, 0o100444], ids=oct)
def test_a_key_file_others_can_read_is_warned_about(tmp_path: Path, pki: Pki, mode: int) -> None:
    config = load(tmp_path, listener(pki))
    (warning,) = readable_secret_files(config, modes({pki.key: mode}))
    assert str(warning) == (
        f"private key file {pki.key} (server.tls.key_file) is readable by group/others (mode {mode & 0o7777:04o})"
    )
    assert warning.log_event() == (
        "private key file is readable by group/others",
        {"key_file": pki.key, "mode": f"{mode & 0o7777:04o}", "config_keys": ["server.tls.key_file"]},
    )


@pytest.mark.parametrize("mode", [0o100600, 0o100400, 0o100700], ids=oct)
def test_a_private_key_file_gets_no_warning(tmp_path: Path, pki: Pki, mode: int) -> None:
    assert readable_secret_files(load(tmp_path, listener(pki)), modes({pki.key: mode})) == ()


def test_the_config_file_and_key_files_are_warned_about_together(tmp_path: Path, pki: Pki) -> None:
    config = load(tmp_path, {**listener(pki), "admin": {"token": "tls-test-token"}})
    warnings = readable_secret_files(config, modes({config.source: 0o100644, pki.key: 0o100640}))
    assert [(w.path, w.is_private_key, w.keys) for w in warnings] == [
        (config.source, False, ("admin.token",)),
        (pki.key, True, ("server.tls.key_file",)),
    ]
    assert readable_secret_files(config, lambda path: None) == ()  # a file that cannot be stat'ed


def test_check_config_prints_the_key_file_warning(tmp_path: Path, pki: Pki) -> None:
    key = readable_key(tmp_path, pki.key, 0o644)
    (tmp_path / "agent.toml").write_text(to_toml(listener(pki, key_file=key)))
    result = cli("check-config", "-c", "agent.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"sidecar-agent: warning: private key file {key} (server.tls.key_file) is readable by group/others (mode 0644)",
        "configuration OK (agent.toml)",
    ]
    (tmp_path / "agent.toml").write_text(to_toml(listener(pki)))
    assert cli("check-config", "-c", "agent.toml", cwd=tmp_path).stderr.splitlines() == ["configuration OK (agent.toml)"]


def test_run_logs_the_key_file_warning(tmp_path: Path, pki: Pki, agent_factory: Callable[..., AgentProcess]) -> None:
    # A client certificate for a plain-HTTP upstream: the agent starts as it would without TLS.
    key = readable_key(tmp_path, pki.client_key, 0o640)
    upstream = {"url": f"http://127.0.0.1:{free_port()}", "tls": {"cert_file": pki.client_cert, "key_file": key}}
    agent = agent_factory({"upstream": upstream})
    agent.stop()
    records = agent.log_records()
    warned = [r for r in records if r["message"] == "private key file is readable by group/others"]
    assert len(warned) == 1, records
    assert warned[0]["level"] == "WARNING" and warned[0]["key_file"] == key and warned[0]["mode"] == "0640"
    assert warned[0]["config_keys"] == ["upstream.tls.key_file", "checks.upstream.tls.key_file"]
