"""The built image, run the way production runs it: read-only root, no capabilities, no new
privileges, UID 10001, beside a real PostgreSQL and a real upstream (host network, loopback).

The module shares one container; the last test stops it with a request in flight.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from agent import __version__
from tests.support.agent import Response, http_get
from tests.support.image import BuiltImage
from tests.support.lock import RUNTIME_LOCK, read_lock
from tests.support.net import free_port
from tests.support.podman import podman, remove_container
from tests.support.postgres import PostgresServer
from tests.support.responses import SECURITY_HEADERS, UUID4
from tests.support.upstream import UpstreamProcess

pytestmark = pytest.mark.slow

DRAIN_DELAY_S = 2.0
IN_FLIGHT_S = 8.0
HARDENED = ("--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
# The build stage's tools (Dockerfile): the packaging tools, mypy (mypyc) with the dependencies
# it alone brings (requirements-build.lock; typing_extensions is a runtime dependency too), and
# the base's own pip, setuptools and wheel.
PACKAGING = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel")
NOT_IN_THE_IMAGE = (*PACKAGING, "mypy", "mypyc", "mypy_extensions", "librt", "ast_serialize", "pathspec")
# Their console scripts, and a C toolchain's programs (gcc, the compiler proper cc1, binutils).
NO_PROGRAMS = ("pip", "pip3", "mypy", "mypyc", "dmypy", "stubgen", "stubtest")
NO_PROGRAMS += ("gcc", "cc", "cc1", "c++", "g++", "cpp", "as", "ld", "ld.bfd", "ld.gold")  # not ld.so: glibc's loader
NO_PROGRAM_PREFIXES = ("pip3.", "gcc-", "g++-", "cpp-", "x86_64-linux-gnu-", "aarch64-linux-gnu-")

# Run inside the image: every place those packages, their wheels or those programs could hide,
# searched by name.
FIND_BUILD_TOOLS = """
import importlib.metadata, importlib.util, json, os, re, sys
wanted = json.loads(sys.argv[1])
names, programs, prefixes = wanted["packages"], wanted["programs"], tuple(wanted["prefixes"])
canonical = lambda name: re.sub(r"[-_.]+", "-", name).lower()
found = {"importable": [n for n in names if importlib.util.find_spec(n)],
         "distributions": sorted({canonical(d.metadata["Name"]) for d in importlib.metadata.distributions()}
                                 & {canonical(n) for n in names}),
         "files": []}
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for entry in dirs + files:
        lower, path = entry.lower(), os.path.join(root, entry)
        if (
            (entry in dirs and lower in names)  # a package directory
            or (entry in files and lower.endswith(".py") and lower[:-3] in names)  # a single-module package
            or lower.startswith(tuple(n + "-" for n in names))  # *.dist-info, *.whl
            or lower == "distutils-precedence.pth"
            or (entry in files and (lower in programs or lower.startswith(prefixes)) and os.access(path, os.X_OK))
        ):
            found["files"].append(path)
print(json.dumps(found))
"""


@dataclass
class AgentContainer:
    name: str
    port: int
    admin_port: int
    token: str

    def get(self, path: str, *, admin: bool = False, headers: dict[str, str] | None = None, method: str = "GET") -> Response:
        port = self.admin_port if admin else self.port
        return http_get(f"http://127.0.0.1:{port}{path}", headers=headers, method=method, timeout=15)

    def authed(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def logs(self) -> tuple[str, str]:
        result = podman("logs", self.name)
        return result.stdout, result.stderr


@pytest.fixture(scope="module")
def agent(
    agent_image: BuiltImage, tmp_root_stays_traversable: None, pg: PostgresServer, upstream: UpstreamProcess
) -> Iterator[AgentContainer]:
    upstream.set_mode("healthy")
    pg.resume()  # as the running_pg fixture does: earlier tests may have hung or stopped it
    if not pg.is_running():
        pg.restart()
    container = AgentContainer(f"sidecar-agent-test-{uuid.uuid4().hex[:8]}", free_port(), free_port(), secrets.token_urlsafe(16))
    env = {
        "AGENT_SERVER_LISTEN": f"127.0.0.1:{container.port}",
        "AGENT_ADMIN_LISTEN": f"127.0.0.1:{container.admin_port}",
        "AGENT_ADMIN_TOKEN": container.token,
        "AGENT_UPSTREAM_URL": upstream.url,
        "DATABASE_URL": pg.dsn,
        "AGENT_HEALTH_INTERVAL_S": "1",
        "AGENT_SERVER_DRAIN_DELAY_S": str(DRAIN_DELAY_S),
        "AGENT_SERVER_SHUTDOWN_TIMEOUT_S": "20",
    }
    run = ["run", "--detach", "--name", container.name, "--network", "host", *HARDENED, "--user", "10001:10001"]
    run += [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    podman(*run, agent_image.reference)
    try:
        _wait_for(container, "/health/startup", 200, timeout_s=30)
        yield container
    finally:
        remove_container(container.name)


def _wait_for(container: AgentContainer, path: str, status: int, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = container.get(path).status
            if last == status:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    out, err = container.logs()
    raise AssertionError(f"{path} never answered {status} (last: {last!r})\n{out[-4000:]}\n{err[-4000:]}")


def _inspect(reference: str, *, kind: str = "image") -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(podman(kind, "inspect", reference).stdout)
    return found[0]


def _python_in(image: BuiltImage, script: str, *args: str) -> str:
    """Run ``python -c script args`` in the image (its default user, hardened); its stdout."""
    run = ["run", "--rm", "--network", "host", *HARDENED, "--entrypoint", "python", image.reference, "-c", script, *args]
    return podman(*run).stdout


# --------------------------------------------------------------------------- the image itself


def test_image_keeps_the_healthcheck_user_ports_and_command(agent_image: BuiltImage):
    image = _inspect(agent_image.reference)
    assert image["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json", "--format docker"
    assert image["Healthcheck"]["Test"] == ["CMD", "sidecar-agent", "probe", "live", "--timeout", "3"]
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert set(config["ExposedPorts"]) == {"8000/tcp", "9464/tcp"}
    assert config["Entrypoint"] == ["sidecar-agent"] and config["Cmd"] == ["run"]
    assert config["StopSignal"] in ("SIGTERM", "15")


def test_image_has_no_build_tools_pip_setuptools_mypy_or_compiler(agent_image: BuiltImage):
    """The build stage's compiler and build virtualenv stay there; the base's pip and setuptools go."""
    wanted = {"packages": NOT_IN_THE_IMAGE, "programs": NO_PROGRAMS, "prefixes": NO_PROGRAM_PREFIXES}
    found = json.loads(_python_in(agent_image, FIND_BUILD_TOOLS, json.dumps(wanted)))
    assert found == {"importable": [], "distributions": [], "files": []}


def test_the_image_holds_the_compiled_request_path(agent_image: BuiltImage):
    """Every module of agent/compiled.py loads from its mypyc extension module, beside its source."""
    script = (
        "import importlib, json, agent.compiled as c; mods = [importlib.import_module(m) for m in c.COMPILED_MODULES]; "
        "print(json.dumps([c.code, [m.__name__ for m in mods if not c.is_compiled(m)], "
        "[m for m in c.COMPILED_MODULES if not c.source_path(m).is_file()]]))"
    )
    code, not_compiled, no_source = json.loads(_python_in(agent_image, script))
    assert code == "compiled (mypyc)"
    assert not_compiled == [] and no_source == []


def test_image_holds_exactly_the_locked_versions(agent_image: BuiltImage):
    script = (
        "import importlib.metadata as m, json, platform; print(json.dumps([platform.python_version(), platform.machine(),"
        " {d.metadata['Name']: d.version for d in m.distributions()}]))"
    )
    python, machine, distributions = json.loads(_python_in(agent_image, script))
    installed = {canonicalize_name(name): version for name, version in distributions.items()}
    env = {"python_version": python.rsplit(".", 1)[0], "python_full_version": python, "platform_machine": machine}
    env |= {"sys_platform": "linux", "platform_system": "Linux"}
    locked = {name: pin.version for name, pin in read_lock(RUNTIME_LOCK).items() if not pin.marker or pin.marker.evaluate(env)}
    assert installed.pop("sidecar-agent") == __version__
    assert installed == locked, "the image holds the lock's pins and nothing else"


def test_the_image_can_export_traces(agent_image: BuiltImage):
    """The [otlp] extra is in the image (locked like the rest): tracing needs only config."""
    script = (
        "from agent.config import build_config; from agent.tracing import Tracer; "
        "tracer = Tracer(build_config({'tracing': {'enabled': True}}, {}, 'image').tracing); "
        "print(tracer.shutdown(1.0))"
    )
    assert _python_in(agent_image, script).strip() == "True"


def test_the_image_runs_as_uid_10001_without_being_told(agent_image: BuiltImage):
    assert _python_in(agent_image, "import os; print(os.getuid(), os.getgid())").split() == ["10001", "10001"]


# --------------------------------------------------------------------------- the running container


def test_every_endpoint_answers(agent: AgentContainer):
    for path in ("/health/live", "/health/ready", "/health/startup", "/health"):
        assert agent.get(path).status == 200, path
        assert agent.get(path, admin=True).status == 200, path
    details = agent.get("/health", admin=True, headers=agent.authed()).json()
    assert {"database", "upstream"} <= set(details["checks"]), details
    assert details["checks"]["database"]["status"] == "pass", details
    history = agent.get("/health/history", admin=True, headers=agent.authed())
    assert history.status == 200 and history.json()
    assert agent.get("/health/history", admin=True).status == 401, "details need the token"
    metrics = agent.get("/metrics", admin=True, headers=agent.authed())
    assert metrics.status == 200 and b"agent_check_status" in metrics.body
    status_page = agent.get("/status", admin=True, headers=agent.authed())
    assert status_page.status == 200 and b"<html" in status_page.body.lower()
    for asset in ("/status/app.js", "/status/app.css", "/status/favicon.svg"):
        assert agent.get(asset, admin=True, headers=agent.authed()).status == 200, asset
    assert agent.get("/admin/drain", admin=True, headers=agent.authed(), method="POST").status == 200
    assert agent.get("/health/ready").status == 503
    assert agent.get("/admin/undrain", admin=True, headers=agent.authed(), method="POST").status == 200
    assert agent.get("/health/ready").status == 200


def test_a_proxied_request_carries_its_headers_both_ways(agent: AgentContainer):
    response = agent.get("/echo/x?y=1", headers={"X-Client-Header": "kept", "Host": "api.example.com"})
    assert response.status == 200
    request_id = response.headers["X-Request-ID"]
    assert UUID4.match(request_id), request_id
    for header in SECURITY_HEADERS:
        assert response.headers.get(header), header
    seen = response.json()
    assert seen["path"] == "/echo/x?y=1"
    headers = {name.lower(): value for name, value in seen["headers"]}
    assert headers["x-client-header"] == "kept"
    assert headers["x-request-id"] == request_id
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "api.example.com"


def test_podman_healthcheck_run_is_healthy(agent: AgentContainer):
    result = podman("healthcheck", "run", agent.name, check=False, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    state = _inspect(agent.name, kind="container")["State"]
    health = state.get("Health") or state["Healthcheck"]
    assert health["Status"] == "healthy", health


def test_logs_are_json_lines_on_stdout(agent: AgentContainer):
    agent.get("/echo/logged")
    time.sleep(0.3)
    stdout, stderr = agent.logs()
    records = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert records, "nothing on stdout"
    assert not stderr.strip(), stderr
    assert all({"timestamp", "level", "message"} <= set(r) for r in records)
    access = [r for r in records if r["message"] == "request completed" and r.get("path") == "/echo/logged"]
    assert access and access[0]["status"] == 200 and UUID4.match(access[0]["request_id"])


def test_the_running_agent_says_it_runs_the_compiled_request_path(agent: AgentContainer, container_report: list[str]):
    stdout, _ = agent.logs()
    started = [json.loads(line) for line in stdout.splitlines() if line.strip() and '"agent started"' in line]
    assert len(started) == 1, stdout[-4000:]
    assert started[0]["message"] == "agent started"
    assert started[0]["code"] == "compiled (mypyc)", started[0]
    assert started[0]["event_loop"] == "uvloop", started[0]
    container_report.append(f"the agent in the image runs: {started[0]['code']}, {started[0]['event_loop']} event loop")


def _run_once(image: BuiltImage, *env: str, args: tuple[str, ...] = ()) -> Any:
    """``podman run`` the image to completion, hardened, with ``env`` (KEY=VALUE each); no
    healthcheck timer, so podman adds no line of its own to the output."""
    run = ["run", "--rm", "--no-healthcheck", "--network", "host", *HARDENED, "--user", "10001:10001"]
    run += [arg for pair in env for arg in ("--env", pair)]
    return podman(*run, image.reference, *args, check=False, timeout=60)


def test_a_bad_config_key_exits_2_naming_it_in_one_line(agent_image: BuiltImage):
    result = _run_once(agent_image, "AGENT_UPSTREAM_READ_TIMEOUT_S=-1")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1 and "upstream.read_timeout_s" in lines[0], lines
    missing = _run_once(agent_image, args=("run", "-c", "/no/such/agent.toml"))
    assert missing.returncode == 2 and "/no/such/agent.toml" in missing.stderr, (missing.stdout, missing.stderr)
    assert len((missing.stdout + missing.stderr).strip().splitlines()) == 1


def test_a_port_in_use_exits_1_with_one_json_line_naming_the_listener(agent: AgentContainer, agent_image: BuiltImage):
    busy = f"127.0.0.1:{agent.port}"  # the running container's main listener (host network)
    result = _run_once(agent_image, f"AGENT_SERVER_LISTEN={busy}", f"AGENT_ADMIN_LISTEN=127.0.0.1:{free_port()}")
    assert result.returncode == 1, (result.stdout, result.stderr)
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failures = [r for r in records if r.get("message") == "cannot start"]
    assert len(failures) == 1 and failures[0]["reason"].startswith(f"main listener {busy}"), records
    assert "Traceback" not in result.stderr


def test_podman_stop_waits_for_the_in_flight_request_then_exits_0(agent: AgentContainer, container_report: list[str]):
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            outcome["response"] = agent.get(f"/slow?delay_s={IN_FLIGHT_S}")
        except OSError as exc:
            outcome["error"] = exc
        outcome["done_at"] = time.monotonic()

    client = threading.Thread(target=slow_request)
    sent_at = time.monotonic()
    client.start()
    time.sleep(1.0)  # in flight at the upstream
    stop_started = time.monotonic()
    stop = podman("stop", "--time", "30", agent.name, timeout=60)
    stop_s = time.monotonic() - stop_started
    client.join(timeout=30)

    assert "error" not in outcome, outcome
    response: Response = outcome["response"]
    assert response.status == 200 and response.json() == {"slept": IN_FLIGHT_S}
    assert _inspect(agent.name, kind="container")["State"]["ExitCode"] == 0, stop.stderr
    # The container outlives the in-flight request (its remaining time), and the drain delay, and
    # nothing more than a moment: no SIGKILL at 30 s.
    remaining_s = IN_FLIGHT_S - (stop_started - sent_at)
    assert outcome["done_at"] <= stop_started + stop_s + 0.5
    assert max(remaining_s, DRAIN_DELAY_S) - 0.5 <= stop_s <= DRAIN_DELAY_S + IN_FLIGHT_S + 2, stop_s
    stdout, _ = agent.logs()
    messages = [json.loads(line)["message"] for line in stdout.splitlines() if line.strip()]
    assert "agent stopped" in messages
    container_report.append(
        f"podman stop -t 30 with an {IN_FLIGHT_S:.0f} s request in flight ({remaining_s:.1f} s left), "
        f"drain delay {DRAIN_DELAY_S:.0f} s: stopped in {stop_s:.1f} s, exit 0"
    )
