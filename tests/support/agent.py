"""Runs the real agent as a subprocess (``python -m agent run -c FILE``) for integration tests.

A listener with a ``[server.tls]`` / ``[admin.tls]`` ``cert_file`` is spoken to over HTTPS, with
the ``tls`` client context the test gives (a client certificate, a CA) or, by default, one that
verifies nothing, as the kubelet's probes do.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import REPO_ROOT, environ_without_agent_config
from tests.support.net import free_port


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for test configs: nested tables of strings, numbers, bools, arrays."""
    lines: list[str] = []
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    for key, value in scalars.items():
        lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    for key, value in tables.items():
        lines.append(to_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(type(value))


def proxy_config(upstream_url: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """An agent config for proxy tests: no background checks (nothing but the test talks to the
    upstream, so its request counter is exact), a short drain, extra sections merged in."""
    config: dict[str, Any] = {
        "server": {"drain_delay_s": 0.1, "shutdown_timeout_s": 2.0},
        "upstream": {"url": upstream_url},
        "health": {"interval_s": 0.5, "timeout_s": 0.5},
        "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return config


def _scheme(section: dict[str, Any]) -> str:
    """``https`` for a listener whose ``tls`` table names a certificate."""
    tls = section.get("tls")
    return "https" if isinstance(tls, dict) and tls.get("cert_file") else "http"


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes, elapsed_s: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed_s = elapsed_s

    def json(self) -> Any:
        return json.loads(self.body)


def unverified_tls() -> ssl.SSLContext:
    """A client context that checks neither the name nor the chain (what a probe uses)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_get(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    method: str = "GET",
    tls: ssl.SSLContext | None = None,
) -> Response:
    """One request on a new connection; ``https://`` URLs use ``tls`` (default: unverified)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    started = time.perf_counter()
    conn = (
        http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=tls or unverified_tls())
        if parts.scheme == "https"
        else http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    )
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return Response(resp.status, resp.headers, body, time.perf_counter() - started)
    finally:
        conn.close()


class AgentProcess:
    """One agent process with its own config file, ports and captured output."""

    def __init__(
        self, workdir: Path, config: dict[str, Any], *, env: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.workdir = workdir
        self.tls = tls  # the client context for listeners that speak TLS
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_port = free_port()
        config = {**config}
        config.setdefault("server", {})
        config["server"] = {"listen": f"127.0.0.1:{self.port}", **config["server"]}
        config.setdefault("admin", {})
        config["admin"] = {"listen": f"127.0.0.1:{self.admin_port}", **config["admin"]}
        admin_host, admin_port = str(config["admin"]["listen"]).rsplit(":", 1)  # a test may choose its own
        self.admin_address = ("127.0.0.1" if admin_host in ("0.0.0.0", "") else admin_host.strip("[]"), int(admin_port))
        self.scheme = _scheme(config["server"])
        self.admin_scheme = _scheme(config["admin"])
        self.admin_enabled = config["admin"].get("enabled", True) is not False
        self.config_path = workdir / "agent.toml"
        self.config_path.write_text(to_toml(config))
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.env = environ_without_agent_config(keep_database_url=True)
        self.env.update(env or {})
        self.env["PYTHONPATH"] = str(REPO_ROOT)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"{self.admin_scheme}://127.0.0.1:{self.admin_port}"

    def start(self, *, wait: bool = True, timeout: float = 15.0) -> AgentProcess:
        with self.stdout_path.open("ab") as stdout, self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "-c", str(self.config_path)],
                cwd=self.workdir,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
            )
        if wait:
            self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"agent exited with {self.process.returncode}: {self.output()[-2000:]}")
            try:
                if http_get(self.url + "/health/live", timeout=1.0, tls=self.tls).status == 200 and self._admin_accepts():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"agent not listening after {timeout}s: {self.output()[-2000:]}")

    def _admin_accepts(self) -> bool:
        """True when the admin listener is off or accepts connections (it opens right after the main one)."""
        if not self.admin_enabled:
            return True
        with socket.create_connection(self.admin_address, timeout=1.0):
            return True

    def wait_for(self, path: str, status: int, *, timeout: float, admin: bool = False) -> float:
        """Poll until ``path`` answers ``status``; returns the seconds it took."""
        started = time.monotonic()
        base = self.admin_url if admin else self.url
        last = None
        while time.monotonic() - started < timeout:
            last = http_get(base + path, timeout=2.0, tls=self.tls).status
            if last == status:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{path} still {last} after {timeout}s, wanted {status}")

    def get(self, path: str, *, admin: bool = False, headers: dict[str, str] | None = None, method: str = "GET") -> Response:
        return http_get((self.admin_url if admin else self.url) + path, headers=headers, method=method, tls=self.tls)

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return out + err

    def log_records(self) -> list[dict[str, Any]]:
        """Every complete stdout line parsed as JSON (a line that is not JSON fails the test), split
        on ``\n`` only, as a log shipper splits them: a CR or U+2028 in a value must not cut a line.
        Text after the last ``\n`` is a line still being written (a read can land mid-``write``),
        so it waits for the next call, as a shipper tailing the file waits for the newline."""
        data = self.stdout_path.read_bytes() if self.stdout_path.exists() else b""
        complete = data[: data.rfind(b"\n") + 1]
        return [json.loads(line) for line in complete.split(b"\n") if line.strip()]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
