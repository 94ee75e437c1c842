"""A real HAProxy load balancer in front of agents, read through its own runtime API.

``HAProxy(workdir, frontend_port, [(name, port), ...], server_options=...)`` writes a config whose
backend health-checks ``GET /health/ready`` on each server; ``server_options`` is what follows
``server NAME 127.0.0.1:PORT`` (``ssl verify none check check-ssl ...`` for agents serving TLS),
one string for every server or one per server name.
Server state and per-server session counters come from ``show stat`` on the admin stats socket,
not from the responses.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HAPROXY = shutil.which("haproxy") or "haproxy"  # tests skip themselves when it is missing
BACKEND = "agents"
PLAIN_SERVER_OPTIONS = "check inter 300ms fall 2 rise 2"


class HAProxy:
    """A foreground (``-db``) HAProxy subprocess with an admin stats socket."""

    def __init__(
        self,
        workdir: Path,
        frontend_port: int,
        backends: list[tuple[str, int]],
        *,
        server_options: str | dict[str, str] = PLAIN_SERVER_OPTIONS,
    ) -> None:
        self.workdir = workdir
        self.frontend_port = frontend_port
        self.names = tuple(name for name, _ in backends)
        sock = workdir / "haproxy.sock"
        self._sock_tmpdir: str | None = None
        if len(str(sock)) > 100:  # sun_path is 108 bytes; HAProxy also appends ".<pid>.tmp"
            self._sock_tmpdir = tempfile.mkdtemp(prefix="hap-")
            sock = Path(self._sock_tmpdir) / "haproxy.sock"
        self.socket_path = sock
        self.config_path = workdir / "haproxy.cfg"
        self.log_path = workdir / "haproxy.log"
        options = server_options if isinstance(server_options, dict) else dict.fromkeys(self.names, server_options)
        servers = "\n".join(f"    server {name} 127.0.0.1:{port} {options[name]}" for name, port in backends)
        self.config_path.write_text(
            f"""\
global
    stats socket {sock} level admin
    nbthread 1

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s

frontend fe
    bind 127.0.0.1:{frontend_port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health/ready ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
{servers}
"""
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.frontend_port}"

    def validate(self) -> None:
        result = subprocess.run([HAPROXY, "-c", "-f", str(self.config_path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"haproxy -c rejected the config:\n{result.stdout}{result.stderr}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.process.returncode}:\n{self.output()}")
            try:
                self.show_stat()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"haproxy stats socket not answering after 10 s:\n{self.output()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._sock_tmpdir is not None:
            shutil.rmtree(self._sock_tmpdir, ignore_errors=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    # -------------------------------------------------------- runtime API
    def command(self, line: str) -> str:
        """One command on the stats socket (non-interactive mode: the server closes after it)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def show_stat(self) -> dict[str, dict[str, str]]:
        """``show stat`` of our backend's servers, keyed by server name."""
        text = self.command("show stat")
        if not text.startswith("# "):
            raise OSError(f"unexpected show stat output: {text[:200]!r}")
        rows = csv.DictReader(io.StringIO(text[2:]))
        return {row["svname"]: row for row in rows if row["pxname"] == BACKEND and row["svname"] in self.names}

    def servers(self) -> dict[str, tuple[str, str, int]]:
        """``{name: (status, check_status, stot)}``."""
        return {
            name: (row["status"], row["check_status"].removeprefix("* "), int(row["stot"] or 0))
            for name, row in self.show_stat().items()
        }

    def stot(self) -> dict[str, int]:
        return {name: stot for name, (_, _, stot) in self.servers().items()}

    def wait_status(
        self, wanted: dict[str, Callable[[str, str], bool]], *, timeout: float, why: str, diagnostics: Callable[[], str]
    ) -> float:
        """Poll until every named server's (status, check_status) satisfies its predicate."""
        started = time.monotonic()
        last: dict[str, tuple[str, str, int]] = {}
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"haproxy died ({self.process.returncode}):\n{self.output()}")
            last = self.servers()
            if all(pred(*last[name][:2]) for name, pred in wanted.items()):
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{why}: not reached after {timeout} s; servers={last}\n{diagnostics()}")


def is_up(status: str, check_status: str) -> bool:
    # Servers start UP before their first check; L7OK proves a real 200 from /health/ready.
    return status == "UP" and check_status == "L7OK"


def is_down(status: str, check_status: str) -> bool:
    return status == "DOWN"
