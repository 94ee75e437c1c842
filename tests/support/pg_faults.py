"""PostgreSQL faults that ``PostgresServer`` does not offer: freezing only the postmaster (backends
keep running), and a real hot standby made with ``pg_basebackup``; and which backends the agent's
check holds."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.net import free_port
from tests.support.postgres import OS_USER, SUPERUSER, PostgresServer, find_bin_dir, run_as_postgres


@contextlib.contextmanager
def frozen_postmaster(pg: PostgresServer) -> Iterator[int]:
    """SIGSTOP only the postmaster (backends keep running); always SIGCONT on exit."""
    pid = pg.postmaster_pid()
    if pid is None:
        raise RuntimeError("cannot freeze: the server is not running")
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
        backup = run_as_postgres(
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
        started = run_as_postgres(
            [str(self.bin_dir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "30"],
            timeout=60,
        )
        if started.returncode != 0:
            raise RuntimeError(f"standby did not start: {started.stderr}\n{self.log_path.read_text()[-2000:]}")
        return self

    def psql(self, sql: str) -> str:
        result = run_as_postgres(
            [str(self.bin_dir / "psql"), "-XAtq", "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-c", sql]
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        return result.stdout.strip()

    def stop(self) -> None:
        """Stop it (immediate: nothing to keep) and remove its directory."""
        if (self.data_dir / "postmaster.pid").exists():
            run_as_postgres([str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"])
        shutil.rmtree(self.base_dir, ignore_errors=True)
