"""A real Prometheus server for tests: loopback only, 1 s scrape interval, always stopped.

``PrometheusServer(workdir, targets).start()`` writes a config scraping ``targets`` (host:port of
agent admin listeners), starts ``prometheus`` (Debian package ``prometheus``) with its TSDB under
``workdir`` and waits (bounded) until ``/-/ready``; ``query(expr)`` runs an instant query through
the HTTP API; ``stop()`` terminates it (SIGKILL after 10 s). ``extra_flags`` go on its command
line (``["--enable-feature=exemplar-storage"]``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.net import free_port

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


class PrometheusServer:
    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        *,
        rule_files: list[Path] = (),
        scrape_interval_s: int = 1,
        extra_flags: list[str] = (),
    ) -> None:
        self.workdir = workdir
        self.extra_flags = list(extra_flags)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        rules = "".join(f"\n  - {json.dumps(str(path))}" for path in rule_files)
        self.config_path.write_text(
            f"global:\n  scrape_interval: {scrape_interval_s}s\n  scrape_timeout: {scrape_interval_s}s\n"
            f"  evaluation_interval: {scrape_interval_s}s\n"
            + (f"rule_files:{rules}\n" if rule_files else "")
            + "scrape_configs:\n  - job_name: agent\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
        )
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        binary = prometheus_binary()
        assert binary is not None, "prometheus is not installed"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                    *self.extra_flags,
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {READY_TIMEOUT_S}s: {self.log()[-2000:]}")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the error as JSON
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: a vector (``[{"metric": {...}, "value": [t, "v"]}]``), a matrix for a range
        selector (``"values"`` instead of ``"value"``), or a scalar as a one-element vector."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("vector", "matrix"):
            return data["result"]
        return [{"metric": {}, "value": data["result"]}]

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, or None when the result is empty."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, predicate: Callable[[float | None], bool], *, timeout: float) -> float:
        """Poll ``expr`` until ``predicate(value)``; returns the seconds it took."""
        started = time.monotonic()
        last: float | None = None
        while time.monotonic() - started < timeout:
            last = self.value(expr)
            if predicate(last):
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{expr} = {last} after {timeout}s; prometheus log: {self.log()[-1500:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
