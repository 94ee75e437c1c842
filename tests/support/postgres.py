"""An ephemeral, real PostgreSQL cluster for tests.

``PostgresServer`` owns one throw-away cluster living under a caller-chosen
``base_dir`` (typically ``tmp_path / "pg"``):

* ``base_dir/data``        - the data directory (created by ``initdb`` once),
* ``base_dir/sock``        - the unix socket directory,
* ``base_dir/server.log``  - everything the server logs (``log_statement=all``).

The server listens on TCP only on 127.0.0.1, on a port that was free when the
cluster was first started; ``restart()`` keeps that port.  A login role
``agent`` (SCRAM password = ``password``) owns the database ``agentdb``.

Nothing under ``base_dir`` is deleted by this module; removing it is the
caller's (pytest's) job.  Only when ``base_dir/sock`` would be too long for a
unix socket path is a short ``/tmp/pgsock-*`` directory used instead, and
``close()`` removes that one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from tests.support.net import free_port

DB_NAME = "agentdb"
ROLE_NAME = "agent"
SUPERUSER = "postgres"
OS_USER = "postgres"

# sun_path holds 108 bytes incl. the NUL; postgres appends "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 107 - len("/.s.PGSQL.65535")
_OVERRIDES_FILE = "test_overrides.conf"
_LOG_TAIL_BYTES = 4000

# First line of a log entry that records an executed statement.  Simple
# protocol logs "statement: ...", extended protocol (asyncpg) logs
# "execute <name>: ...".
_STATEMENT_RE = re.compile(r"\] db=(?P<db>\S*) LOG:  (?:statement|execute [^:]*): (?P<sql>.*)$")


def find_bin_dir() -> Path:
    """Return the directory holding ``initdb``/``pg_ctl``/``psql``.

    Uses ``pg_config --bindir`` when it works and the directory has
    ``pg_ctl``; otherwise the highest-versioned ``/usr/lib/postgresql/*/bin``.
    Raises ``RuntimeError`` when neither exists.
    """
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out and (Path(out) / "pg_ctl").exists():
            return Path(out)
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates = [p for p in candidates if (p / "pg_ctl").exists()]
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries found")
    return max(candidates, key=_version_key)


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``."""
    version = bin_dir.parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (0,)


def _ppid_map() -> dict[int, list[int]]:
    """Map each pid to its direct children, read from ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        # Field 2 (comm) may contain spaces/parens: split after the last ')'.
        fields = data[data.rindex(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children, grandchildren, ...)."""
    tree = _ppid_map()
    found: list[int] = []
    stack = list(tree.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(tree.get(child, []))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to ``pid``, ignoring processes that are already gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _sql_literal(value: str) -> str:
    """Quote ``value`` as a standard-conforming SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def run_as_postgres(
    args: Sequence[str], *, input_text: str | None = None, timeout: float = 60, cwd: Path = Path("/")
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as the ``postgres`` OS user when root (the server refuses to run
    as root), without inherited PG* settings, in the C locale; never raises on its exit status."""
    cmd = ["runuser", "-u", OS_USER, "--", *args] if os.geteuid() == 0 else list(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C", "LANG": "C"}
    return subprocess.run(
        cmd,
        input=input_text,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
        stdin=None if input_text is not None else subprocess.DEVNULL,
    )


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


class PostgresServer:
    """One ephemeral PostgreSQL cluster; see the module docstring.

    Guarantees: after ``start()`` returns, the server accepts connections on
    ``dsn`` (role ``agent``, database ``agentdb``).  ``close()`` never leaves
    the cluster stopped with SIGSTOP or running.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        password: str | None = None,
        max_connections: int = 20,
        bin_dir: Path | None = None,
    ) -> None:
        self._base_dir = Path(base_dir).absolute()
        self._password = password if password is not None else secrets.token_urlsafe(24)
        self._max_connections = max_connections
        self._bin_dir = Path(bin_dir) if bin_dir is not None else find_bin_dir()
        self._as_postgres = os.geteuid() == 0
        self._port: int | None = None
        self._hung_pids: list[int] = []
        self._fallback_socket_dir: Path | None = None
        self._roles_ready = False

    # ------------------------------------------------------------------ props
    @property
    def base_dir(self) -> Path:
        """The directory everything of this cluster lives in."""
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self._base_dir / "data"

    @property
    def log_path(self) -> Path:
        """The server log (all statements are logged here)."""
        return self._base_dir / "server.log"

    @property
    def socket_dir(self) -> Path:
        """Directory holding the server's unix socket."""
        return self._socket_dir()

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1; fixed once the cluster was first started."""
        if self._port is None:
            raise RuntimeError("PostgresServer has not been started")
        return self._port

    @property
    def password(self) -> str:
        """Password of both the ``agent`` role and the ``postgres`` superuser."""
        return self._password

    @property
    def dsn(self) -> str:
        """``postgresql://agent:<password>@127.0.0.1:<port>/agentdb``."""
        pw = urllib.parse.quote(self._password, safe="")
        return f"postgresql://{ROLE_NAME}:{pw}@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def is_hung(self) -> bool:
        """True between ``hang()`` and ``resume()``."""
        return bool(self._hung_pids)

    # -------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Initialise (first time only) and start the cluster; idempotent.

        Raises ``RuntimeError`` with the tail of ``server.log`` if the server
        does not come up within 30 s.
        """
        if self.is_running():
            return
        self._prepare_base_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self._port is None:
            self._port = free_port()
        self._write_overrides()
        self._pg_ctl_start()
        if not self._roles_ready:
            self._ensure_role_and_database()
            self._roles_ready = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode -w``); no-op if not running.

        A hung cluster is resumed first.  Raises ``RuntimeError`` on failure.
        """
        self.resume()
        if not self.is_running():
            return
        result = self._run(
            [self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30"],
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl stop -m {mode} failed ({result.returncode}): {result.stdout}{result.stderr}\n{self._log_tail()}"
            )

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data dir."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """True if ``pg_ctl status`` sees a live postmaster (even a hung one)."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run(
            [self._bin("pg_ctl"), "status", "-D", str(self.data_dir)],
            check=False,
            timeout=30,
        )
        return result.returncode == 0

    def postmaster_pid(self) -> int | None:
        """Pid from the first line of ``postmaster.pid`` if that process lives."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first.strip())
        except (FileNotFoundError, IndexError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def close(self) -> None:
        """Resume if hung, then stop (``fast``, falling back to ``immediate``).

        Removes no files.  Safe to call more than once or before ``start()``.
        """
        self.resume()
        try:
            self.stop("fast")
        except RuntimeError:
            self.stop("immediate")
        if self._fallback_socket_dir is not None:
            # Outside base_dir, so ours to remove; start() re-creates it.
            shutil.rmtree(self._fallback_socket_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ hang/resume
    def hang(self) -> None:
        """SIGSTOP the postmaster and every descendant process.

        New connections then stall (the kernel still accepts TCP, but nobody
        answers).  Raises ``RuntimeError`` if the server is not running.
        """
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("cannot hang: server is not running")
        _signal(pid, signal.SIGSTOP)
        stopped = [pid]
        # The stopped postmaster cannot fork; scan twice to catch a child that
        # was being forked at the moment of the first scan.
        for _ in range(2):
            for child in _descendants(pid):
                if child not in stopped:
                    _signal(child, signal.SIGSTOP)
                    stopped.append(child)
        self._hung_pids = stopped

    def resume(self) -> None:
        """SIGCONT every process stopped by ``hang()``; safe when not hung."""
        pids = list(self._hung_pids)
        self._hung_pids = []
        if not pids:
            return
        for child in _descendants(pids[0]):
            if child not in pids:
                pids.append(child)
        for pid in reversed(pids):  # children first, postmaster last
            _signal(pid, signal.SIGCONT)

    @contextlib.contextmanager
    def hung(self) -> Iterator[PostgresServer]:
        """Context manager: ``hang()`` on entry, always ``resume()`` on exit."""
        self.hang()
        try:
            yield self
        finally:
            self.resume()

    # ---------------------------------------------------------------- queries
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the unix socket; return stdout.

        Uses ``psql -XAtq -v ON_ERROR_STOP=1``; raises ``RuntimeError`` with
        psql's stderr if any statement fails.
        """
        result = self._run(
            [
                self._bin("psql"),
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self._socket_dir()),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ],
            input_text=sql,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def statement_log_size(self) -> int:
        """Current size in bytes of ``server.log`` (0 if it does not exist)."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def count_statements(self, substring: str, database: str | None = DB_NAME, *, since: int = 0) -> int:
        """Count logged statements whose SQL text contains ``substring``.

        Counts both simple-protocol (``statement:``) and extended-protocol
        (``execute <name>:``) entries, multi-line statements included.  Only
        entries of ``database`` count (``None`` = any database), and only
        those written at or after byte offset ``since`` (see
        ``statement_log_size()``).
        """
        return sum(1 for db, sql in self._logged_statements(since) if (database is None or db == database) and substring in sql)

    def _logged_statements(self, since: int) -> Iterator[tuple[str, str]]:
        """Yield ``(database, sql)`` for each statement entry after ``since``."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(since)
                text = fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return
        current: tuple[str, list[str]] | None = None
        for line in text.splitlines():
            if line.startswith("\t") and current is not None:
                current[1].append(line[1:])
                continue
            if current is not None:
                yield current[0], "\n".join(current[1])
                current = None
            match = _STATEMENT_RE.search(line)
            if match:
                current = (match.group("db"), [match.group("sql")])
        if current is not None:
            yield current[0], "\n".join(current[1])

    # ---------------------------------------------------------------- helpers
    def _bin(self, name: str) -> str:
        return str(self._bin_dir / name)

    def _run(
        self,
        args: Sequence[str],
        *,
        input_text: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL command (``run_as_postgres``) from the base directory."""
        cwd = self._base_dir if self._base_dir.is_dir() else Path("/")
        result = run_as_postgres(args, input_text=input_text, timeout=timeout, cwd=cwd)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}")
        return result

    def _chown(self, path: Path) -> None:
        """Give ``path`` to the postgres OS user (only when running as root)."""
        if self._as_postgres:
            shutil.chown(path, user=OS_USER, group=OS_USER)

    def _prepare_base_dir(self) -> None:
        """Create base_dir and socket dir, owned by postgres and reachable."""
        self._base_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self._base_dir)
        os.chmod(self._base_dir, 0o700)
        if self._as_postgres:
            self._grant_traverse_on_ancestors()
        sock = self._socket_dir()
        sock.mkdir(mode=0o700, exist_ok=True)
        self._chown(sock)

    def _grant_traverse_on_ancestors(self) -> None:
        """Add o+x to ancestors of base_dir so postgres can reach it.

        pytest's ``/tmp/pytest-of-root`` is mode 0700; search permission
        (no read) is the minimum the server process needs.
        """
        for parent in self._base_dir.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)

    def _socket_dir(self) -> Path:
        """``base_dir/sock``, or a short /tmp dir if that path is too long."""
        preferred = self._base_dir / "sock"
        if len(str(preferred)) <= _MAX_SOCKET_DIR_LEN:
            return preferred
        if self._fallback_socket_dir is None:
            self._fallback_socket_dir = Path(tempfile.mkdtemp(prefix="pgsock-"))
            self._chown(self._fallback_socket_dir)
        return self._fallback_socket_dir

    def _initdb(self) -> None:
        """Run initdb with trust (local) / scram (host) auth."""
        pwfile = self._base_dir / "pwfile"
        pwfile.write_text(self._password + "\n")
        os.chmod(pwfile, 0o600)
        self._chown(pwfile)
        try:
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                timeout=180,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as fh:
            fh.write(f"\ninclude '{_OVERRIDES_FILE}'\n")

    def _write_overrides(self) -> None:
        """(Re)write the settings this module relies on."""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": _sql_literal(str(self._socket_dir())),
            "password_encryption": "'scram-sha-256'",
            "log_statement": "'all'",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] db=%d '",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": str(self._max_connections),
            "shared_buffers": "16MB",
        }
        path = self.data_dir / _OVERRIDES_FILE
        path.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        self._chown(path)

    def _pg_ctl_start(self) -> None:
        """``pg_ctl start -w -t 30``; RuntimeError with the log tail on failure."""
        result = self._run(
            [self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "30"],
            check=False,
            timeout=90,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}\n--- server.log tail ---\n"
                f"{self._log_tail()}"
            )

    def _ensure_role_and_database(self) -> None:
        """Create (or re-password) role ``agent`` and database ``agentdb``.

        The password-bearing statement runs with ``log_statement = 'none'`` so
        the password never reaches ``server.log``.
        """
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = {_sql_literal(ROLE_NAME)}")
        verb = "ALTER" if exists.strip() else "CREATE"
        self.psql(f"SET log_statement = 'none';\n{verb} ROLE {ROLE_NAME} WITH LOGIN PASSWORD {_sql_literal(self._password)};\n")
        has_db = self.psql(f"SELECT 1 FROM pg_database WHERE datname = {_sql_literal(DB_NAME)}")
        if not has_db.strip():
            self.psql(f"CREATE DATABASE {DB_NAME} OWNER {ROLE_NAME}")

    def _log_tail(self) -> str:
        """Last few KB of ``server.log`` (empty string if missing)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, self.statement_log_size() - _LOG_TAIL_BYTES))
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
