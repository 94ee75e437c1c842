"""Helpers for the reliability scenarios: what the agent reports (metrics, admin health, logs) and
PostgreSQL faults that ``tests/support/postgres.py`` does not offer (freezing only the postmaster,
a real hot standby made with ``pg_basebackup``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.agent import AgentProcess
from tests.support.net import free_port
from tests.support.postgres import OS_USER, SUPERUSER, PostgresServer, find_bin_dir

# --------------------------------------------------------------------------- agent reports


def scrape(agent: AgentProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the admin ``/metrics`` page, keyed by (sample name, labels)."""
    response = agent.get("/metrics", admin=True)
    assert response.status == 200, response.status
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(agent: AgentProcess, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series does not exist."""
    return scrape(agent).get((name, frozenset(labels.items())))


def upstream_errors(agent: AgentProcess) -> dict[str, float]:
    """``agent_upstream_errors_total`` by reason."""
    return {
        dict(labels)["reason"]: value for (name, labels), value in scrape(agent).items() if name == "agent_upstream_errors_total"
    }


def check_detail(agent: AgentProcess, name: str) -> dict[str, Any]:
    """The admin listener's full detail of one check (status, message, observations...)."""
    body = agent.get("/health", admin=True).json()
    detail: dict[str, Any] = body["checks"][name]
    return detail


def wait_check(agent: AgentProcess, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """Poll the admin detail of ``name`` until ``predicate`` holds; returns that detail."""
    deadline = time.monotonic() + timeout
    detail = check_detail(agent, name)
    while not predicate(detail):
        if time.monotonic() > deadline:
            raise AssertionError(f"check {name!r} never matched within {timeout}s; last: {detail}")
        time.sleep(0.05)
        detail = check_detail(agent, name)
    return detail


def runs(agent: AgentProcess, check: str) -> list[dict[str, Any]]:
    """The check's recent runs from the admin ``/health/history`` (oldest first): each run's own
    result, latency and message, before hysteresis."""
    body = agent.get("/health/history", admin=True).json()
    found: list[dict[str, Any]] = body["checks"][check]["runs"]
    return found


def records(agent: AgentProcess, message: str, **fields: Any) -> list[dict[str, Any]]:
    """The agent's JSON log lines with that message and those field values."""
    return [r for r in agent.log_records() if r.get("message") == message and all(r.get(k) == v for k, v in fields.items())]


def status_changes(agent: AgentProcess, check: str) -> list[tuple[str, str]]:
    return [(r["from"], r["to"]) for r in records(agent, "check status changed", check=check)]


def slowest_probe(agent: AgentProcess, rounds: int = 30) -> float:
    """The slowest of ``rounds`` x (live, ready, /health) on the main listener, in seconds."""
    slowest = 0.0
    for _ in range(rounds):
        for path in ("/health/live", "/health/ready", "/health"):
            slowest = max(slowest, agent.get(path).elapsed_s)
    return slowest


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------- PostgreSQL


def postmaster_pid(pg: PostgresServer) -> int:
    first = (pg.data_dir / "postmaster.pid").read_text().splitlines()[0]
    return int(first.strip())


@contextlib.contextmanager
def frozen_postmaster(pg: PostgresServer) -> Iterator[int]:
    """SIGSTOP only the postmaster (backends keep running); always SIGCONT on exit."""
    pid = postmaster_pid(pg)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def agent_backend_pids(pg: PostgresServer) -> list[int]:
    """Backends the agent's postgres check holds (``application_name = 'sidecar-agent'``)."""
    out = pg.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'sidecar-agent' ORDER BY pid")
    return [int(line) for line in out.split()]


def _run_as_postgres(args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = ["runuser", "-u", OS_USER, "--", *args] if os.geteuid() == 0 else args
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C", "LANG": "C"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/", check=False)


@contextlib.contextmanager
def keep_traversable(directory: Path, period_s: float = 0.01) -> Iterator[None]:
    """While inside, keep o+x (search permission) on ``directory``: a thread puts it back every
    ``period_s`` if something removed it. Only when running as root (PostgreSQL then runs as the
    ``postgres`` user and must traverse it)."""
    if os.geteuid() != 0:
        yield
        return
    stop = threading.Event()

    def fix() -> None:
        with contextlib.suppress(OSError):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)

    def keep() -> None:
        while not stop.wait(period_s):
            fix()

    fix()
    thread = threading.Thread(target=keep, name="keep-traversable", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class HotStandby:
    """A real streaming-replication standby of ``primary`` on its own port.

    ``pg_basebackup -R`` over the primary's unix socket (``local replication all trust`` is in
    initdb's default ``pg_hba.conf``) writes ``standby.signal`` and ``primary_conninfo``; the
    port and socket directory are overridden in ``postgresql.auto.conf``. Same roles and
    passwords as the primary, so ``dsn`` logs in as ``agent``. It lives in its own ``/tmp``
    directory (out of reach of pytest's permission resets), removed by ``stop()``.
    """

    def __init__(self, primary: PostgresServer) -> None:
        self.primary = primary
        self.base_dir = Path(tempfile.mkdtemp(prefix="pg-standby-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_path = self.base_dir / "standby.log"
        self.port = free_port()
        self.bin_dir = find_bin_dir()

    @property
    def dsn(self) -> str:
        return self.primary.dsn.replace(f":{self.primary.port}/", f":{self.port}/")

    def start(self) -> HotStandby:
        self.socket_dir.mkdir(mode=0o700)
        if os.geteuid() == 0:
            for path in (self.base_dir, self.socket_dir):
                shutil.chown(path, user=OS_USER, group=OS_USER)
        backup = _run_as_postgres(
            [
                str(self.bin_dir / "pg_basebackup"),
                *("-h", str(self.primary.socket_dir), "-p", str(self.primary.port), "-U", SUPERUSER),
                *("-D", str(self.data_dir), "-R", "-X", "stream", "-c", "fast"),
            ],
            timeout=120,
        )
        if backup.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {backup.stderr}")
        with open(self.data_dir / "postgresql.auto.conf", "a") as fh:
            fh.write(f"port = {self.port}\nunix_socket_directories = '{self.socket_dir}'\nhot_standby = on\n")
        started = _run_as_postgres(
            [str(self.bin_dir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "30"],
            timeout=60,
        )
        if started.returncode != 0:
            raise RuntimeError(f"standby did not start: {started.stderr}\n{self.log_path.read_text()[-2000:]}")
        return self

    def psql(self, sql: str) -> str:
        result = _run_as_postgres(
            [str(self.bin_dir / "psql"), "-XAtq", "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-c", sql]
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout.strip()

    def stop(self) -> None:
        """Stop it (immediate: nothing to keep) and remove its directory."""
        if (self.data_dir / "postmaster.pid").exists():
            _run_as_postgres([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"])
        shutil.rmtree(self.base_dir, ignore_errors=True)
