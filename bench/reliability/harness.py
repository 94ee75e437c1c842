"""The processes of a reliability run: the upstreams, one fresh agent per figure, client children.

Built on ``bench.probe`` (``Children``, pinning, /proc readings) and ``bench.proxy`` (spawning with
a parent-death signal, nginx, readiness waits). The agent runs pinned to ``ctx.agent_cpu``; nginx,
the slow upstream, wrk and the asyncio clients to ``ctx.load_cpu``. Every wait is bounded; every
child is registered in ``ctx.children`` and told to exit (SIGTERM) if this process dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import probe
from bench.probe import Children, pin_prefix
from bench.proxy import Fail, Service, _die_with_parent, _tail, agent_config, spawn, start_nginx, wait_for
from bench.reliability import upstream
from tests.support.agent import to_toml
from tests.support.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Ctx:
    children: Children
    workdir: Path
    agent_cpu: int | None
    load_cpu: int | None
    up_port: int = 0  # the nginx upstream the agents proxy to
    app_port: int = 0  # tests.support.upstream, behind nginx
    nginx: Service | None = None


def child_env() -> dict[str, str]:
    """This environment, with the repository first on the import path (``tests.support``, ``bench``)."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit; every child (agent, clients, wrk) inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ----------------------------------------------------------------------- child processes
def read_until(proc: subprocess.Popen[bytes], token: bytes, timeout: float) -> bytes:
    """Read the child's stdout (raw fd) until ``token`` and the end of its line, or EOF/timeout."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
            at = out.find(token)
            if at >= 0 and out.find(b"\n", at) >= 0:
                return bytes(out)
        elif proc.poll() is not None:
            break
    raise Fail(f"no {token!r} from {proc.args!r} within {timeout:.0f} s (exit {proc.poll()}): {bytes(out)[-2000:]!r}")


def spawn_python(ctx: Ctx, args: list[str], stderr: Path) -> subprocess.Popen[bytes]:
    """``python <args>`` from the repository, pinned to the load CPU; stdout is a pipe to read."""
    with stderr.open("ab") as err:
        return ctx.children.popen(
            [*pin_prefix(ctx.load_cpu), sys.executable, *args],
            cwd=REPO_ROOT,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=_die_with_parent,
        )


def spawn_client(ctx: Ctx, params: dict[str, Any], name: str) -> subprocess.Popen[bytes]:
    """One of the asyncio load generators: ``python -m bench.reliability.clients <params>``."""
    return spawn_python(ctx, ["-m", "bench.reliability.clients", json.dumps(params)], ctx.workdir / f"client-{name}.stderr")


def finish_child(ctx: Ctx, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait for a client child that ends by itself; return its whole remaining stdout."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        ctx.children.stop(proc)
        raise Fail(f"{proc.args!r} did not finish within {timeout:.0f} s") from exc
    finally:
        if proc in ctx.children.procs and proc.poll() is not None:
            ctx.children.procs.remove(proc)
    if proc.returncode != 0:
        raise Fail(f"{proc.args!r} exited {proc.returncode} after {len(out)} bytes of output")
    return out.decode(errors="replace")


def last_json(text: str, what: str) -> dict[str, Any]:
    """The last line of ``text`` that starts with ``{``, parsed (a client's result)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                data: dict[str, Any] = json.loads(line)
            except ValueError as exc:
                raise Fail(f"{what}: unreadable JSON result ({exc}): {line[:300]!r} ... {line[-300:]!r}") from None
            return data
    raise Fail(f"{what}: no JSON result in its output:\n{text[-2000:]}")


# ----------------------------------------------------------------------------- upstreams
def start_upstreams(ctx: Ctx) -> None:
    """The slow app, then the nginx in front of it; sets the ports and checks every path."""
    ctx.app_port = _start_app(ctx)
    ctx.up_port = free_port()
    ctx.nginx = start_nginx(
        ctx.children,
        ctx.workdir,
        "upstream",
        lambda d: upstream.nginx_conf(d, ctx.up_port, ctx.app_port),
        ctx.up_port,
        ctx.load_cpu,
    )
    upstream.check_upstream(ctx.up_port)


def _start_app(ctx: Ctx) -> int:
    """``python -m tests.support.upstream --port 0`` pinned to the load CPU; returns its port.

    Not ``tests.support.upstream.start_upstream_process()``: that one is not registered in
    ``ctx.children`` and gets no parent-death signal, so a SIGKILLed run would leave it behind."""
    log = ctx.workdir / "app-upstream.log"
    proc = spawn_python(ctx, ["-m", "tests.support.upstream", "--port", "0", "--host", "127.0.0.1"], log)
    out = read_until(proc, b"READY ", 15.0)
    match = re.search(rb"READY (\d+)", out)
    if not match:
        raise Fail(f"tests.support.upstream did not report READY: {out!r} {_tail(log)}")
    return int(match.group(1))


# --------------------------------------------------------------------------------- agent
@dataclass
class Agent(probe.Agent):
    """``bench.probe``'s handle on a running agent, with the figure's name and the agent's log."""

    name: str
    log: Path

    def check_alive(self, during: str) -> None:
        if self.proc.poll() is not None:
            raise Fail(f"agent died during {during} (exit {self.proc.returncode}):\n{_tail(self.log)}")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def start_agent(ctx: Ctx, name: str, overrides: dict[str, Any]) -> Agent:
    """``bench.proxy``'s agent config (defaults: access log, metrics, headers; ports, fast drain, no
    disk or database check) with the upstream check on ``/health``, then ``overrides``."""
    d = ctx.workdir / name
    d.mkdir(mode=0o755)
    port, admin_port = free_port(), free_port()
    config = _merge(agent_config(ctx.up_port, port, admin_port), {"checks": {"upstream": {"path": "/health"}}})
    config_path = d / "agent.toml"
    config_path.write_text(to_toml(_merge(config, overrides)))
    env = {k: v for k, v in child_env().items() if not k.startswith("AGENT_") and k != "DATABASE_URL"}
    log = d / "agent.log"  # stdout (access log + app log) to a file, as in production
    argv = [*pin_prefix(ctx.agent_cpu), sys.executable, "-m", "agent", "run", "-c", str(config_path)]
    proc = spawn(ctx.children, argv, log, d, env)
    ready_s = wait_for(name, proc, port, "/health/ready", log)
    return Agent(proc, port, admin_port, ready_s, name, log)


def stop_agent(ctx: Ctx, agent: Agent) -> int | None:
    ctx.children.stop(agent.proc)
    return agent.proc.returncode
