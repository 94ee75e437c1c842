"""The Dockerfile, read and run natively (no Docker engine here): what the image would do."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tests.support.agent import to_toml
from tests.support.console_script import check_config, console_script_env
from tests.support.dockerfile import Instruction, Stage, parse_dockerfile
from tests.support.net import free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"
IMAGE_CONFIG_PATH = "/etc/sidecar-agent/agent.toml"


@pytest.fixture(scope="module")
def final() -> Stage:
    _, stages = parse_dockerfile(DOCKERFILE)
    return stages[-1]


def test_bases_are_slim_python_3_11_or_newer():
    args, stages = parse_dockerfile(DOCKERFILE)
    assert len(stages) == 2, "a build stage and a runtime stage"
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)
        match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", base)
        assert match, base
        assert (int(match.group(1)), int(match.group(2))) >= (3, 11)
    assert stages[0].base == stages[1].base, "the virtualenv's python symlinks need the same base"


def test_runs_as_a_numeric_non_root_user(final: Stage):
    user = final.last("USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    # Numeric, so the kubelet can enforce runAsNonRoot without the image's passwd file.
    assert uid.isdigit() and int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # Nothing after USER switches back to root.
    assert final.instructions.index(user) > max(final.instructions.index(i) for i in final.all("RUN"))


def test_final_stage_installs_no_compiler_or_curl(final: Stage):
    text = " ".join(i.args for i in final.instructions if i.keyword in ("RUN", "COPY", "ADD"))
    tools = ("curl", "wget", "gcc", "g++", "build-essential", "make", "apt-get install", "pip install", "mypy", "python3-dev")
    for tool in tools:
        assert tool not in text, tool
    assert not final.all("ADD"), "COPY only: ADD can fetch URLs and unpack archives"
    copies = [i.args for i in final.all("COPY")]
    assert [c for c in copies if c.startswith("--from=")] == ["--from=build /opt/sidecar-agent /opt/sidecar-agent"], (
        "only the runtime virtualenv leaves the build stage: not /opt/build, not the wheel"
    )


def _build_runs() -> list[str]:
    _, stages = parse_dockerfile(DOCKERFILE)
    return [" ".join(i.args.split()) for i in stages[0].all("RUN")]


def test_build_stage_gets_a_compiler_and_python_headers_only_where_missing():
    apt = next(r for r in _build_runs() if "apt-get install" in r)
    assert "apt-get update" in apt and "--no-install-recommends gcc libc6-dev" in apt
    # python:*-slim has Python's headers; Debian's python3-dev there would bring a second Python.
    assert '$([ -f "$include/Python.h" ] || echo python3-dev)' in apt
    assert apt.endswith("rm -rf /var/lib/apt/lists/*")


def test_build_tools_live_in_their_own_virtualenv_and_the_runtime_one_never_has_pip():
    runs = _build_runs()
    venvs = next(r for r in runs if "-m venv" in r)
    assert "python -m venv /opt/build" in venvs
    assert "python -m venv --without-pip /opt/sidecar-agent" in venvs
    build_lock = next(r for r in runs if "-r requirements-build.lock" in r)
    assert "/opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements-build.lock" in build_lock
    for run in runs:
        for command in run.split("&&"):
            if "/opt/sidecar-agent" in command and " install " in command:
                assert "requirements-build.lock" not in command, "the build tools stay out of the runtime virtualenv"
                assert command.strip().startswith("/opt/build/bin/pip --python /opt/sidecar-agent/bin/python install "), command
    assert not any("/opt/sidecar-agent/bin/pip" in r for r in runs), "the runtime virtualenv has no pip to run"


def test_build_installs_the_locks_with_hashes_then_the_agent_alone():
    runs = _build_runs()
    locked = next(r for r in runs if "--require-hashes" in r and "-r requirements.lock" in r)
    runtime = next(c for c in locked.split("&&") if "-r requirements.lock" in c)
    assert "--python /opt/sidecar-agent/bin/python install --require-hashes --only-binary=:all:" in runtime
    assert "--only-binary=:all:" in locked.split("&&")[0], "no dependency (nor build tool) is compiled"
    agent = next(r for r in runs if " wheel " in r)
    wheel, install = agent.split("&&")
    assert wheel.strip().startswith("/opt/build/bin/pip wheel "), "the locked build tools build the wheel"
    for flag in ("--no-deps", "--no-index", "--no-build-isolation"):
        assert flag in wheel, f"the agent's wheel is built {flag}: everything else came from the locks"
    assert "-w /wheels" in wheel
    assert "--no-deps --no-index /wheels/sidecar_agent-" in install, "the agent alone, from the wheel just built"
    _, stages = parse_dockerfile(DOCKERFILE)
    copies = [i.args.split() for i in stages[0].all("COPY")]
    assert copies.index(["requirements.lock", "requirements-build.lock", "./"]) < copies.index(["agent", "./agent"]), (
        "the dependency layers come before the agent's code, so they stay cached"
    )
    assert ["pyproject.toml", "setup.py", "README.md", "./"] in copies, "setup.py compiles the request path"


def test_the_build_fails_unless_the_compiled_request_path_runs():
    runs = _build_runs()
    check = runs[-1]
    assert check.startswith("/opt/sidecar-agent/bin/python -I -c "), "-I: the installed agent, not /src/agent"
    for part in ("agent.compiled as c", 'c.code.startswith("compiled")', "sys.exit(not"):
        assert part in check, part
    assert "c.is_compiled" in check and "c.COMPILED_MODULES" in check, "every listed module is an extension module"
    assert runs.index(check) > next(i for i, r in enumerate(runs) if " wheel " in r)


def test_final_stage_removes_the_bases_pip_and_setuptools_for_every_python_version(final: Stage):
    cleanup = " ".join(" ".join(i.args for i in final.all("RUN")).split())
    # python:*-slim keeps them in /usr/local (3.11 ships setuptools too, 3.12+ pip only), plus
    # ensurepip's bundled wheels; a Debian-packaged Python keeps the wheels in /usr/share.
    for path in ("/usr/local/bin/pip", "/usr/local/lib/python3*/ensurepip/_bundled", "/usr/share/python-wheels"):
        assert path in cleanup, path
    assert "for dir in /usr/local/lib/python3*/site-packages" in cleanup, "a glob, not one PYTHON_VERSION"
    for name in ("pip", "pip-*", "setuptools", "setuptools-*", "pkg_resources", "_distutils_hack", "wheel", "wheel-*"):
        assert f'"$dir"/{name} ' in f"{cleanup} " or f'"$dir"/{name};' in cleanup, name


def test_entrypoint_cmd_and_healthcheck_use_exec_form(final: Stage):
    entrypoint, cmd, healthcheck = final.last("ENTRYPOINT"), final.last("CMD"), final.last("HEALTHCHECK")
    assert entrypoint and cmd and healthcheck
    # Exec form: the agent is PID 1 and gets SIGTERM itself (a shell would swallow it).
    assert entrypoint.exec_form == ["sidecar-agent"]
    assert cmd.exec_form == ["run"]
    health_argv = healthcheck_argv(final)
    assert health_argv[:3] == ["sidecar-agent", "probe", "live"], "liveness: a database outage must not mark it unhealthy"
    assert "curl" not in healthcheck.args
    assert final.last("STOPSIGNAL").args == "SIGTERM"  # type: ignore[union-attr]


def test_exposes_both_listeners_and_documents_the_config_path(final: Stage):
    exposed = {port for i in final.all("EXPOSE") for port in i.args.split()}
    assert exposed == {"8000", "9464"}
    env = final.env()
    assert env["AGENT_CONFIG"] == IMAGE_CONFIG_PATH
    assert env["PATH"].startswith("/opt/sidecar-agent/bin:")
    copies = [i.args.split() for i in final.all("COPY")]
    assert ["deploy/docker/agent.toml", IMAGE_CONFIG_PATH] in copies


def test_dockerignore_lets_through_exactly_what_the_build_copies():
    _, stages = parse_dockerfile(DOCKERFILE)
    sources = []
    for stage in stages:
        for instruction in stage.all("COPY"):
            parts = instruction.args.split()
            if not parts[0].startswith("--from="):
                sources.extend(parts[:-1])
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "allow-list style: everything else stays out of the build context"
    assert {s.rstrip("/") for s in sources} <= allowed
    assert all((REPO_ROOT / s).exists() for s in sources)


def test_baked_default_config_is_valid(tmp_path: Path):
    effective = check_config((REPO_ROOT / "deploy/docker/agent.toml").read_text(), tmp_path)
    assert effective["server"]["listen"] == "0.0.0.0:8000"
    assert effective["admin"]["listen"] == "0.0.0.0:9464"
    assert set(effective["checks"]) == {"upstream", "disk"}
    with_db = check_config(
        (REPO_ROOT / "deploy/docker/agent.toml").read_text(), tmp_path, {"DATABASE_URL": "postgresql://u:p@db:5432/app"}
    )
    assert with_db["checks"]["database"]["type"] == "postgres"


def healthcheck_argv(final: Stage) -> list[str]:
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    options, sep, command = healthcheck.args.partition("CMD ")
    assert sep and all(o.startswith("--") for o in options.split()), healthcheck.args
    argv = Instruction("CMD", command).exec_form
    assert argv is not None, f"HEALTHCHECK must use the exec form: {command!r}"
    return argv


def test_image_command_serves_and_healthcheck_passes_then_sigterm_exits_0(final: Stage, tmp_path: Path):
    """ENTRYPOINT + CMD run with the image's ENV, the config at $AGENT_CONFIG; HEALTHCHECK passes."""
    run_argv = final.last("ENTRYPOINT").exec_form + final.last("CMD").exec_form  # type: ignore[operator,union-attr]
    health_argv = healthcheck_argv(final)

    config = tmp_path / "agent.toml"
    config.write_text(
        to_toml(
            {
                "server": {"listen": f"127.0.0.1:{free_port()}", "drain_delay_s": 0.2, "shutdown_timeout_s": 2.0},
                "admin": {"listen": f"127.0.0.1:{free_port()}"},
                "health": {"interval_s": 0.5},
            }
        )
    )
    env = console_script_env(tmp_path)
    env.update({k: v for k, v in final.env().items() if k != "PATH"})
    env["AGENT_CONFIG"] = str(config)  # where a volume or ConfigMap would put the file

    def healthcheck() -> subprocess.CompletedProcess[str]:
        return subprocess.run(health_argv, env=env, capture_output=True, text=True, timeout=10, cwd=tmp_path)

    assert healthcheck().returncode == 1, "nothing is running yet: the healthcheck must fail"
    log = (tmp_path / "agent.log").open("w")
    process = subprocess.Popen(run_argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "agent.log").read_text()
            result = healthcheck()
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.returncode == 0, result.stderr
        assert "alive" in result.stdout
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, (tmp_path / "agent.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert '"agent stopped"' in (tmp_path / "agent.log").read_text()
