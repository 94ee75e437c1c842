"""The command line as users and Docker run it: ``python -m agent ...`` in a real subprocess."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent import __version__
from tests.conftest import fast_checks
from tests.support import REPO_ROOT, environ_without_agent_config
from tests.support.agent import AgentProcess, to_toml
from tests.support.net import free_port

PASSWORD = "Cli-Pw-7d3f9a"
ADMIN_TOKEN = "cli-admin-token-5e2b"


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = environ_without_agent_config()
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=cwd,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_config(tmp_path: Path, content: dict[str, Any] | str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else to_toml(content))
    return path


def log_records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A port someone else already listens on (never accepts)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


# --- version ---------------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    result = cli("version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sidecar-agent {__version__}\n"
    assert re.fullmatch(r"sidecar-agent \d+\.\d+\.\d+\S*\n", result.stdout)
    assert result.stderr == ""


def test_version_through_the_entry_point_function(tmp_path: Path) -> None:
    """``sidecar-agent = agent.cli:main`` (the console script) behaves like ``python -m agent``."""
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main(['version']))"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stdout == f"sidecar-agent {__version__}\n"


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage:" in result.stderr


# --- check-config ----------------------------------------------------------------------------


def test_check_config_prints_the_effective_config_as_json(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "server": {"listen": "127.0.0.1:18080"},
            "upstream": {"url": "http://127.0.0.1:18081"},
            "checks": {"disk": {"enabled": False}},
        },
    )
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["server"]["listen"] == "127.0.0.1:18080"
    assert config["upstream"]["url"] == "http://127.0.0.1:18081"
    assert set(config["checks"]) == {"upstream", "disk"}
    assert config["checks"]["disk"] == {"type": "disk", "enabled": False}  # as a file says it
    assert config["checks"]["upstream"]["url"] == "http://127.0.0.1:18081/health"
    assert result.stderr.strip().splitlines() == [f"configuration OK ({path})"]


def test_check_config_without_a_file_uses_defaults(tmp_path: Path) -> None:
    result = cli("check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["server"]["listen"] == "0.0.0.0:8000"
    assert set(config["checks"]) == {"upstream", "disk"}
    assert "defaults" in result.stderr


def test_check_config_finds_agent_config_env_and_local_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    env_path = write_config(conf_dir, {"upstream": {"url": "http://127.0.0.1:9101"}})
    result = cli("check-config", cwd=tmp_path, env={"AGENT_CONFIG": str(env_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["upstream"]["url"] == "http://127.0.0.1:9101"
    write_config(tmp_path, {"upstream": {"url": "http://127.0.0.1:9102"}})
    result = cli("check-config", cwd=tmp_path)
    assert json.loads(result.stdout)["upstream"]["url"] == "http://127.0.0.1:9102"


def test_check_config_never_prints_the_dsn_password_from_the_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "admin": {"token": ADMIN_TOKEN},
            "checks": {"database": {"dsn": f"postgresql+psycopg2://tracker:{PASSWORD}@db:5432/tracker"}},
        },
    )
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert PASSWORD not in output
    assert ADMIN_TOKEN not in output
    config = json.loads(result.stdout)
    assert config["checks"]["database"]["dsn"] == "postgresql://tracker:<SECRET>@db:5432/tracker"
    assert config["admin"]["token"] == "<SECRET>"


def test_check_config_never_prints_secrets_from_the_environment(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {"admin": {"token_env": "SIDECAR_ADMIN_TOKEN"}, "checks": {"database": {"dsn": "postgresql://file:filepw-1@db/app"}}},
    )
    env = {
        "AGENT_CHECKS_DATABASE_DSN": f"postgres://tracker:{PASSWORD}@db-env:5432/tracker",
        "SIDECAR_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    result = cli("check-config", "-c", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert PASSWORD not in output and ADMIN_TOKEN not in output and "filepw-1" not in output
    config = json.loads(result.stdout)
    assert config["checks"]["database"]["dsn"] == "postgresql://tracker:<SECRET>@db-env:5432/tracker"
    assert config["admin"]["token"] == "<SECRET>"


def test_check_config_with_database_url_only(tmp_path: Path) -> None:
    result = cli("check-config", cwd=tmp_path, env={"DATABASE_URL": f"postgresql+asyncpg://t:{PASSWORD}@db/app"})
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert json.loads(result.stdout)["checks"]["database"]["critical"] is True


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)], ids=["0644", "0640", "0600"])
def test_check_config_warns_when_a_file_holding_a_secret_is_readable_by_others(tmp_path: Path, mode: int, warned: bool) -> None:
    path = write_config(tmp_path, {"admin": {"token": ADMIN_TOKEN}})
    path.chmod(mode)
    result = cli("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warning = (
        f"sidecar-agent: warning: config file {path} holds a secret (admin.token)"
        f" and is readable by group/others (mode {mode:04o})"
    )
    expected = [warning] if warned else []
    assert result.stderr.splitlines() == [*expected, f"configuration OK ({path})"]
    assert ADMIN_TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o600, False)], ids=["0644", "0600"])
def test_run_logs_a_warning_when_a_file_holding_a_secret_is_readable_by_others(
    agent_factory: Callable[..., AgentProcess], mode: int, warned: bool
) -> None:
    agent = agent_factory({"upstream": {"url": f"http://127.0.0.1:{free_port()}"}, "admin": {"token": ADMIN_TOKEN}}, start=False)
    agent.config_path.chmod(mode)
    agent.start()
    agent.stop()
    records = agent.log_records()
    assert "agent started" in [r["message"] for r in records]
    exposed = [r for r in records if r["message"] == "config file holding a secret is readable by group/others"]
    if warned:
        assert len(exposed) == 1, records
        assert exposed[0]["level"] == "WARNING"
        assert exposed[0]["config_file"] == str(agent.config_path)
        assert exposed[0]["mode"] == f"{mode:04o}"
        assert exposed[0]["secret_keys"] == ["admin.token"]
    else:
        assert exposed == []
    assert ADMIN_TOKEN not in agent.output()


BAD_CONFIGS: list[tuple[str, Any, dict[str, str], str]] = [
    # (id, file content, extra env, key named in the message)
    ("unknown key", {"server": {"lisen": "0.0.0.0:8000"}}, {}, "server.lisen"),
    ("negative duration", {"upstream": {"read_timeout_s": -1}}, {}, "upstream.read_timeout_s"),
    ("wildcard with credentials", {"cors": {"allowed_origins": ["*"], "allow_credentials": True}}, {}, "cors.allow_credentials"),
    ("bad DSN scheme", {"checks": {"database": {"dsn": f"mysql://u:{PASSWORD}@h/db"}}}, {}, "checks.database.dsn"),
    ("bad env DSN", {}, {"AGENT_CHECKS_DATABASE_DSN": f"mysql://u:{PASSWORD}@h/db"}, "checks.database.dsn"),
    ("unknown env key", {}, {"AGENT_UPSTREAM_NOPE": "1"}, "upstream.nope"),
    ("invalid TOML", "[server\nlisten = 1\n", {}, "config"),
]


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(("content", "env", "key"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, command: str, content: Any, env: dict[str, str], key: str
) -> None:
    if isinstance(content, dict):
        content = {"server": {"listen": f"127.0.0.1:{free_port()}"}, "admin": {"enabled": False}, **content}
    path = write_config(tmp_path, content)
    result = cli(command, "-c", str(path), cwd=tmp_path, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert lines[0].startswith("sidecar-agent: invalid configuration: " + key)
    assert PASSWORD not in result.stdout + result.stderr
    assert "agent started" not in result.stdout
    assert "Traceback" not in result.stderr


def test_run_with_bad_config_never_binds_its_port(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(
        tmp_path,
        {"server": {"listen": f"127.0.0.1:{port}"}, "admin": {"enabled": False}, "upstream": {"read_timeout_s": -1}},
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "-c", str(path)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    connected = False
    deadline = time.monotonic() + 20
    while process.poll() is None and time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                connected = True
        time.sleep(0.01)
    stdout, stderr = process.communicate(timeout=10)
    assert process.returncode == 2
    assert not connected, "the agent bound its port despite an invalid configuration"
    assert stdout == ""
    assert stderr.count("\n") == 1 and "upstream.read_timeout_s" in stderr
    # and the port is still free for whoever comes next
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_run_with_unusable_log_file_fails_with_one_line(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    path = write_config(
        tmp_path,
        {"server": {"listen": f"127.0.0.1:{free_port()}"}, "admin": {"enabled": False}, "logging": {"file": str(log_dir)}},
    )
    result = cli("run", "-c", str(path), cwd=tmp_path, timeout=20)
    assert result.returncode in (1, 2)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 1
    assert "logging.file" in result.stdout + result.stderr


# --- run: cannot start -----------------------------------------------------------------------


@pytest.mark.parametrize("which", ["main", "admin"])
def test_run_exits_1_when_a_port_is_in_use(tmp_path: Path, listening_socket: socket.socket, which: str) -> None:
    busy = listening_socket.getsockname()[1]
    other = free_port()
    listen = {"main": f"127.0.0.1:{busy}", "admin": f"127.0.0.1:{other}"}
    if which == "admin":
        listen = {"main": f"127.0.0.1:{other}", "admin": f"127.0.0.1:{busy}"}
    path = write_config(
        tmp_path,
        {
            "server": {"listen": listen["main"]},
            "admin": {"listen": listen["admin"]},
            "upstream": {"url": f"http://127.0.0.1:{free_port()}"},
        },
    )
    started = time.monotonic()
    result = cli("run", "-c", str(path), cwd=tmp_path, timeout=20)
    assert time.monotonic() - started < 15
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    records = log_records(result.stdout)
    failures = [r for r in records if r["message"] == "cannot start"]
    assert len(failures) == 1, records
    reason = failures[0]["reason"]
    assert "\n" not in reason
    assert reason.startswith(f"{which} listener 127.0.0.1:{busy}")
    assert "in use" in reason
    assert not any(r["message"] == "agent started" for r in records)


# --- probe -----------------------------------------------------------------------------------


@pytest.fixture
def ready_agent(agent_factory: Callable[..., AgentProcess], healthy_upstream: Any) -> AgentProcess:
    agent = agent_factory(fast_checks(healthy_upstream.url))
    agent.wait_for("/health/ready", 200, timeout=10)
    agent.wait_for("/health/startup", 200, timeout=10)
    return agent


def test_probe_against_a_running_agent(tmp_path: Path, ready_agent: AgentProcess) -> None:
    for kind in ("live", "ready", "startup"):
        result = cli("probe", kind, "--url", f"{ready_agent.url}/health/{kind}", cwd=tmp_path)
        assert result.returncode == 0, (kind, result.stdout, result.stderr)
        assert result.stdout.startswith(f"probe {kind}: 200")
        assert result.stdout.count("\n") == 1


def test_probe_derives_the_url_from_the_config(tmp_path: Path, ready_agent: AgentProcess) -> None:
    for kind in ("live", "ready", "startup"):
        result = cli("probe", kind, "-c", str(ready_agent.config_path), cwd=tmp_path)
        assert result.returncode == 0, (kind, result.stdout, result.stderr)
        assert result.stdout.startswith(f"probe {kind}: 200")
    # and via $AGENT_CONFIG, as a Docker HEALTHCHECK would run it
    result = cli("probe", "ready", cwd=tmp_path, env={"AGENT_CONFIG": str(ready_agent.config_path)})
    assert result.returncode == 0, result.stderr


def test_probe_of_a_bare_url_asks_the_kinds_endpoint(tmp_path: Path, ready_agent: AgentProcess) -> None:
    for url in (ready_agent.url, ready_agent.url + "/"):
        result = cli("probe", "live", "--url", url, cwd=tmp_path)
        assert result.returncode == 0, (url, result.stdout, result.stderr)
        assert result.stdout == 'probe live: 200 {"status":"alive"}\n'


@pytest.fixture
async def recording_server(aiohttp_server: Callable[..., Any]) -> tuple[str, list[str]]:
    """``(base URL, request targets received)`` of a server answering 200 to any GET."""
    received: list[str] = []

    async def record(request: web.Request) -> web.Response:
        received.append(request.path_qs)
        return web.json_response({"status": "alive"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", record)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}", received


@pytest.mark.parametrize("suffix", ["", "/"])
@pytest.mark.parametrize("kind", ["live", "ready", "startup"])
async def test_probe_url_without_a_path_gets_the_default_prefix(
    tmp_path: Path, recording_server: tuple[str, list[str]], kind: str, suffix: str
) -> None:
    base, received = recording_server
    result = await asyncio.to_thread(cli, "probe", kind, "--url", base + suffix, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert received == [f"/health/{kind}"]


async def test_probe_url_without_a_path_uses_the_configured_prefix(
    tmp_path: Path, recording_server: tuple[str, list[str]]
) -> None:
    base, received = recording_server
    path = write_config(tmp_path, {"health": {"path_prefix": "/_agent/health"}})
    result = await asyncio.to_thread(cli, "probe", "ready", "--url", base, "-c", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    via_env = await asyncio.to_thread(cli, "probe", "live", "--url", base, cwd=tmp_path, env={"AGENT_CONFIG": str(path)})
    assert via_env.returncode == 0, via_env.stderr
    assert received == ["/_agent/health/ready", "/_agent/health/live"]


async def test_probe_url_with_a_path_is_used_as_is(tmp_path: Path, recording_server: tuple[str, list[str]]) -> None:
    base, received = recording_server
    path = write_config(tmp_path, {"health": {"path_prefix": "/_agent"}})
    for url in (f"{base}/healthz", f"{base}/health/ready?exclude=cache", f"{base}/health/"):
        result = await asyncio.to_thread(cli, "probe", "live", "--url", url, "-c", str(path), cwd=tmp_path)
        assert result.returncode == 0, (url, result.stderr)
    assert received == ["/healthz", "/health/ready?exclude=cache", "/health/"]


def test_probe_ready_fails_while_a_critical_check_fails(tmp_path: Path, agent_factory: Callable[..., AgentProcess]) -> None:
    dead_upstream = f"http://127.0.0.1:{free_port()}"
    agent = agent_factory(fast_checks(dead_upstream))
    ready = cli("probe", "ready", "-c", str(agent.config_path), cwd=tmp_path)
    assert ready.returncode == 1, ready.stdout
    assert ready.stdout.startswith("probe ready: 503")
    live = cli("probe", "live", "-c", str(agent.config_path), cwd=tmp_path)
    assert live.returncode == 0, live.stdout  # a dead app must not restart the pod


def test_probe_with_nothing_listening_fails_fast(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/health/ready"
    started = time.monotonic()
    result = cli("probe", "ready", "--url", url, cwd=tmp_path, timeout=20)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 5, elapsed
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and url in result.stderr


def test_probe_honours_its_timeout(tmp_path: Path, listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    started = time.monotonic()
    result = cli("probe", "live", "--url", f"http://127.0.0.1:{port}/health/live", "--timeout", "0.5", cwd=tmp_path, timeout=20)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 5, elapsed
    assert "Traceback" not in result.stderr


def test_probe_with_a_bad_config_fails_with_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"server": {"lisen": "x"}})
    result = cli("probe", "ready", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1 and "server.lisen" in result.stderr


# --- run: signals ----------------------------------------------------------------------------


def _config(upstream_url: str, drain_delay_s: float) -> dict[str, Any]:
    config = fast_checks(upstream_url)
    config["server"] = {"drain_delay_s": drain_delay_s, "shutdown_timeout_s": 5.0}
    return config


def test_run_then_sigterm_drains_and_exits_0(agent_factory: Callable[..., AgentProcess], healthy_upstream: Any) -> None:
    agent = agent_factory(_config(healthy_upstream.url, drain_delay_s=1.5))
    agent.wait_for("/health/ready", 200, timeout=10)
    agent.send_signal(signal.SIGTERM)
    agent.wait_for("/health/ready", 503, timeout=1.2)  # readiness drops at once, still serving
    assert agent.get("/health/live").status == 200
    assert agent.wait(timeout=15) == 0
    messages = [r["message"] for r in agent.log_records()]
    assert "agent started" in messages
    assert "agent stopped" in messages
    with socket.socket() as sock:  # listeners are closed
        assert sock.connect_ex(("127.0.0.1", agent.port)) != 0


def test_second_sigterm_during_drain_exits_at_once(
    tmp_path: Path, agent_factory: Callable[..., AgentProcess], healthy_upstream: Any
) -> None:
    agent = agent_factory(_config(healthy_upstream.url, drain_delay_s=5.0))
    agent.wait_for("/health/ready", 200, timeout=10)
    agent.send_signal(signal.SIGTERM)
    agent.wait_for("/health/ready", 503, timeout=3)
    # a Docker HEALTHCHECK during the drain sees not-ready
    assert cli("probe", "ready", "--url", f"{agent.url}/health/ready", cwd=tmp_path).returncode == 1
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    code = agent.wait(timeout=4)
    elapsed = time.monotonic() - started
    assert code != 0
    assert elapsed < 2.0, elapsed
    assert "agent stopped" not in [r["message"] for r in agent.log_records()]


# --- drain / undrain -------------------------------------------------------------------------


def test_drain_and_undrain_through_the_local_admin_listener(tmp_path: Path, ready_agent: AgentProcess) -> None:
    """What ``kubectl exec POD -- sidecar-agent drain`` does: the agent's own config finds the listener."""
    drained = cli("drain", "-c", str(ready_agent.config_path), cwd=tmp_path)
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout) == {"draining": True, "reason": "admin", "ready": False}
    assert drained.stdout.count("\n") == 1 and drained.stderr == ""
    assert ready_agent.get("/health/ready").status == 503  # the main listener: out of the Service
    assert ready_agent.get("/health/live").status == 200
    undrained = cli("undrain", cwd=tmp_path, env={"AGENT_CONFIG": str(ready_agent.config_path)})
    assert undrained.returncode == 0, undrained.stderr
    assert json.loads(undrained.stdout) == {"draining": False, "reason": None, "ready": True}
    assert ready_agent.get("/health/ready").status == 200
    events = [r for r in ready_agent.log_records() if r.get("logger") == "agent.admin"]
    assert [(e["message"], e["client_ip"]) for e in events] == [
        ("admin drain requested", "127.0.0.1"),
        ("admin undrain requested", "127.0.0.1"),
    ]


def test_drain_sends_the_token_from_the_flag_the_environment_or_the_config(
    tmp_path: Path, agent_factory: Callable[..., AgentProcess], healthy_upstream: Any
) -> None:
    config = fast_checks(healthy_upstream.url)
    config["admin"] = {"token": ADMIN_TOKEN}
    config["server"] = {"drain_delay_s": 5.0, "shutdown_timeout_s": 2.0}  # still listening for the 409 at the end
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)
    # --url and no config file here: no token to send, so 401 even from loopback.
    refused = cli("drain", "--url", agent.admin_url, cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("drain: 401 UNAUTHORIZED: ") and len(refused.stderr.splitlines()) == 1
    assert ADMIN_TOKEN not in refused.stderr
    assert agent.get("/health/ready").status == 200
    assert cli("drain", "--url", agent.admin_url, "--token", "wrong", cwd=tmp_path).returncode == 1
    flag = cli("drain", "--url", agent.admin_url, "--token", ADMIN_TOKEN, cwd=tmp_path)
    assert flag.returncode == 0, flag.stderr
    assert agent.get("/health/ready").status == 503
    environment = cli("undrain", "--url", agent.admin_url + "/", cwd=tmp_path, env={"AGENT_ADMIN_TOKEN": ADMIN_TOKEN})
    assert environment.returncode == 0, environment.stderr
    assert agent.get("/health/ready").status == 200
    from_file = cli("drain", "-c", str(agent.config_path), cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert cli("undrain", "-c", str(agent.config_path), cwd=tmp_path).returncode == 0
    agent.send_signal(signal.SIGTERM)  # undrain cannot cancel a shutdown: 409, exit 1
    agent.wait_for("/health/ready", 503, timeout=3)
    conflict = cli("undrain", "-c", str(agent.config_path), cwd=tmp_path)
    assert conflict.returncode == 1 and conflict.stderr.startswith("undrain: 409 CONFLICT: "), conflict.stderr


def test_drain_speaks_https_to_an_admin_listener_with_tls(
    tmp_path: Path, agent_factory: Callable[..., AgentProcess], healthy_upstream: Any
) -> None:
    trustme = pytest.importorskip("trustme")
    leaf = trustme.CA().issue_cert("127.0.0.1")
    cert, key = tmp_path / "admin.pem", tmp_path / "admin-key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    config = fast_checks(healthy_upstream.url)
    config["admin"] = {"tls": {"cert_file": str(cert), "key_file": str(key)}}
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)
    result = cli("drain", "-c", str(agent.config_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert agent.get("/health/ready").status == 503
    assert agent.admin_url.startswith("https://")
    plain_url = "http://" + agent.admin_url.removeprefix("https://")
    plain = cli("undrain", "--url", plain_url, cwd=tmp_path)  # http:// to a TLS listener
    assert plain.returncode == 1 and plain.stderr.startswith("undrain: "), plain.stderr


@pytest.fixture
async def recording_post_server(aiohttp_server: Callable[..., Any]) -> tuple[str, list[tuple[str, str, str | None]]]:
    """``(base URL, (method, target, Authorization) received)`` of a server answering 200 to any POST."""
    received: list[tuple[str, str, str | None]] = []

    async def record(request: web.Request) -> web.Response:
        received.append((request.method, request.path_qs, request.headers.get("Authorization")))
        return web.json_response({"draining": True, "reason": "admin", "ready": False})

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}", received


async def test_drain_url_without_a_path_gets_the_admin_path(
    tmp_path: Path, recording_post_server: tuple[str, list[tuple[str, str, str | None]]]
) -> None:
    base, received = recording_post_server
    for args in (("drain", "--url", base), ("undrain", "--url", base + "/"), ("drain", "--url", base + "/x/admin/drain")):
        result = await asyncio.to_thread(cli, *args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    await asyncio.to_thread(cli, "drain", "--url", base, "--token", ADMIN_TOKEN, cwd=tmp_path)
    assert received == [
        ("POST", "/admin/drain", None),
        ("POST", "/admin/undrain", None),
        ("POST", "/x/admin/drain", None),
        ("POST", "/admin/drain", f"Bearer {ADMIN_TOKEN}"),
    ]


def test_drain_without_an_agent_or_an_admin_listener_fails_with_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    nothing = cli("drain", "--url", url, cwd=tmp_path)
    assert nothing.returncode == 1 and nothing.stdout == ""
    assert len(nothing.stderr.splitlines()) == 1 and f"{url}/admin/drain" in nothing.stderr
    disabled = cli("undrain", "-c", str(write_config(tmp_path, {"admin": {"enabled": False}})), cwd=tmp_path)
    assert disabled.returncode == 1
    assert disabled.stderr == "undrain: the admin listener is disabled (admin.enabled = false)\n"


def test_drain_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"admin": {"lisen": "x"}})
    result = cli("drain", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "admin.lisen" in result.stderr
