"""A real load balancer in front of two real agents, each watching its own real PostgreSQL.

HAProxy health-checks ``GET /health/ready`` on each agent's main listener. When one agent's
database goes away, that agent's readiness turns 503 and HAProxy must take it out of rotation
(while the other keeps serving every request); when the database comes back, the agent must
reconnect on its own, turn ready again and get traffic again. This is the contract load
balancers rely on (SPEC §3).

Server state and per-server session counters are read from HAProxy's own runtime API
(``show stat`` on the admin stats socket, ``tests.support.haproxy``), not inferred from the responses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import fast_checks
from tests.support.agent import AgentProcess, http_get
from tests.support.haproxy import HAProxy, is_down, is_up
from tests.support.net import free_port
from tests.support.postgres import PostgresServer
from tests.support.upstream import start_upstream_process

CHECK_INTERVAL_S = 0.3

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy binary not found on PATH (apt-get install haproxy)"),
]


# --------------------------------------------------------------- fixtures
def _is_our_postmaster(pid: int, server: PostgresServer) -> bool:
    """True only for a live postmaster of *this* cluster (never a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(server.data_dir).encode() in argv


def _reap_postmaster(pid: int, server: PostgresServer) -> None:
    """Fallback for when ``close()`` cannot see the cluster (``pg_ctl status`` needs the data
    dir, which pytest's tmp-dir rotation may already have removed): fast, then immediate shutdown."""
    for sig, wait_s in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0)):
        if not _is_our_postmaster(pid, server):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _is_our_postmaster(pid, server):
            time.sleep(0.1)


@pytest.fixture
def two_databases(tmp_path: Path) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    servers: list[PostgresServer] = []
    try:
        for name in ("pg1", "pg2"):
            server = PostgresServer(tmp_path / name)
            servers.append(server)
            server.start()
        yield servers[0], servers[1]
    finally:
        errors: list[BaseException] = []
        for server in servers:
            pid = server.postmaster_pid()
            try:
                server.close()
            except Exception as exc:  # still stop the other cluster; re-raised below
                errors.append(exc)
            if pid is not None:
                _reap_postmaster(pid, server)
        if errors:
            raise errors[0]


@pytest.fixture
def own_upstream() -> Iterator[str]:
    with start_upstream_process() as process:
        yield process.url


def _send(url: str, count: int) -> list[int]:
    statuses = []
    for i in range(count):
        response = http_get(f"{url}/echo?n={i}", timeout=5.0)
        statuses.append(response.status)
        if response.status == 200:
            assert response.json()["method"] == "GET"
    return statuses


# ------------------------------------------------------------------- test
def test_haproxy_takes_agent_with_dead_database_out_of_rotation_and_back(
    tmp_path: Path,
    agent_factory: Callable[..., AgentProcess],
    two_databases: tuple[PostgresServer, PostgresServer],
    own_upstream: str,
) -> None:
    pg1, pg2 = two_databases
    agent1 = agent_factory(fast_checks(own_upstream, pg1.dsn, interval_s=CHECK_INTERVAL_S), name="agent1")
    agent2 = agent_factory(fast_checks(own_upstream, pg2.dsn, interval_s=CHECK_INTERVAL_S), name="agent2")
    agent1.wait_for("/health/ready", 200, timeout=15)
    agent2.wait_for("/health/ready", 200, timeout=15)

    haproxy = HAProxy(tmp_path, free_port(), [("agent1", agent1.port), ("agent2", agent2.port)])
    haproxy.validate()

    def diagnostics() -> str:
        parts = [f"--- haproxy ---\n{haproxy.output()}"]
        for agent in (agent1, agent2):
            try:
                ready = agent.get("/health/ready")
                state = f"{ready.status} {ready.body[:300]!r}"
            except OSError as exc:
                state = f"unreachable: {exc}"
            parts.append(f"--- {agent.workdir.name}: /health/ready {state}\n{agent.output()[-3000:]}")
        return "\n".join(parts)

    try:
        haproxy.start()

        # 1. Both agents ready -> both servers UP after a real passing check, traffic on both.
        haproxy.wait_status({"agent1": is_up, "agent2": is_up}, timeout=10, why="both UP", diagnostics=diagnostics)
        before = haproxy.stot()
        statuses = _send(haproxy.url, 20)
        assert statuses == [200] * 20, diagnostics()
        after = haproxy.stot()
        assert after["agent1"] > before["agent1"] and after["agent2"] > before["agent2"], (before, after)
        assert sum(after.values()) - sum(before.values()) == 20, (before, after)

        # 2. pg1 dies -> agent1 not ready -> HAProxy marks agent1 DOWN; agent2 stays UP.
        pg1.stop()
        took = haproxy.wait_status({"agent1": is_down}, timeout=10, why="agent1 DOWN after pg1.stop()", diagnostics=diagnostics)
        print(f"agent1 DOWN {took:.2f} s after pg1 stopped")
        direct = agent1.get("/health/ready")
        assert direct.status == 503, diagnostics()
        assert "database" in direct.json()["failing"], direct.json()
        assert agent1.get("/health/live").status == 200, "liveness must not depend on the database"
        assert haproxy.servers()["agent2"][0] == "UP", diagnostics()

        before = haproxy.stot()
        statuses = _send(haproxy.url, 30)
        assert statuses == [200] * 30, f"{statuses}\n{diagnostics()}"
        after = haproxy.stot()
        assert after["agent1"] == before["agent1"], f"DOWN server got traffic: {before} -> {after}"
        assert after["agent2"] - before["agent2"] == 30, (before, after)

        # 3. pg1 is back -> the agent reconnects by itself -> UP again and back in rotation.
        pg1.restart()
        took = haproxy.wait_status(
            {"agent1": is_up, "agent2": is_up}, timeout=15, why="agent1 UP after pg1.restart()", diagnostics=diagnostics
        )
        print(f"agent1 UP {took:.2f} s after pg1 restarted")
        assert agent1.get("/health/ready").status == 200

        before = haproxy.stot()
        statuses = _send(haproxy.url, 20)
        assert statuses == [200] * 20, f"{statuses}\n{diagnostics()}"
        after = haproxy.stot()
        assert after["agent1"] > before["agent1"] and after["agent2"] > before["agent2"], (before, after)
    finally:
        haproxy.stop()
    assert haproxy.process is not None and haproxy.process.returncode is not None
