"""Proxy-hop benchmark: the agent against HAProxy and nginx doing the same job, in one run.

    python -m bench.proxy [--seconds 10] [--runs 3] [--connections 32]

Starts a static upstream (nginx returning a small JSON body) and, each on its own port in front of
that same upstream: the agent (request ID, trace context, security headers, JSON access log to a
file, metrics), HAProxy (request ID + the same 6 security headers, when installed) and nginx as a
proxy (request ID, the same 6 headers, JSON access log to a file). The proxy under test is pinned to
one CPU, the upstream and the load generator (wrk, else a small Python one) to another. The
WebSocket rows (``--only ws`` alone) put a second agent and a second HAProxy in front of a Python
echo server and count CPU per message over 32 tunnels of echo round trips (``bench.websocket``).
The TLS rows (``--only tls`` alone) put a third agent and a third HAProxy, both terminating TLS
with the same certificate, in front of the nginx upstream: keep-alive requests over TLS (wrk), and
new connections with a full handshake and one request each (``bench.tls.handshakes``).
The tracing rows (``--only tracing`` alone) put four agents, tracing off and at ``sample_ratio`` 0,
0.01 and 1.0, beside HAProxy, exporting to a throwaway OTLP sink on the load CPU (``bench.tracing``).
Rows are measured in interleaved rounds, so slow drift in machine load hits every row alike. Prints
a table and, as the very last line, one JSON object with every number. See bench/README.md.

Everything listens on 127.0.0.1; every wait is bounded; every child process is stopped on exit,
including on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import ctypes
import grp
import hashlib
import http.client
import json
import os
import platform
import pwd
import random
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # so ``tests.support`` and ``bench`` import when run from elsewhere
    sys.path.insert(0, str(REPO_ROOT))

from agent import compiled  # noqa: E402
from bench.probe import CLK_TCK, Children, LoadGenerator, LoadResult, cpu_ticks, pin_prefix, rss_mib  # noqa: E402
from bench.table import grid, num  # noqa: E402
from bench.tls.files import KEY_TYPE, TlsFiles, write_tls_files  # noqa: E402
from bench.tls.report import tls_lines  # noqa: E402
from bench.tracing import RATIOS, row_key, row_name, sink_nginx_conf, tracing_lines, tracing_section  # noqa: E402
from bench.tracing import targets as tracing_targets  # noqa: E402
from bench.websocket.client import check as websocket_check  # noqa: E402
from bench.websocket.report import websocket_lines  # noqa: E402
from tests.support.agent import to_toml  # noqa: E402
from tests.support.net import free_port  # noqa: E402

START_TIMEOUT_S = 30.0
WARMUP_S = 1
PRECHECK_REQUESTS = 200
IDLE_SETTLE_S = 1.0

BODY = '{"id":1,"name":"plan","status":"active"}'
PATH = "/v1/plans/1"  # the same path on every row; the upstream answers BODY for any path
ECHO_PATH = "/__bench/request-headers"  # upstream echoes what it received (pre-check only)
# What the echo path answers (nginx variables: the headers the upstream received).
ECHO_BODY = "{" + ",".join(f'"{key}":"$http_{key}"' for key in ("x_request_id", "traceparent", "x_forwarded_proto")) + "}"
WS_PATH = "/ws/echo"
WS_MESSAGE_BYTES = (64, 16 * 1024)
WS_MESSAGES_PER_ROUND_TRIP = 2  # client -> app and app -> client: both pass through the proxy
WS_PRECHECK_MESSAGES = 50  # per message size
HTTP_TARGET_RATIO = 2.0  # the speed issue's target: agent CPU per proxied request within 2 x HAProxy's
READY_TARGET_RPS = 80_000  # and /health/ready on the main listener, one core
WS_TARGET_RATIO = 2.0  # the target: agent CPU per message within 2 x HAProxy's
TLS_TARGET_RATIO = 2.5  # TLS keep-alive: agent CPU per request within 2.5 x HAProxy's, as plain HTTP

# The 6 headers HAProxy and nginx add (the comparison); values are the agent's defaults.
SIX_HEADERS = (
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Content-Security-Policy",
    "Cross-Origin-Opener-Policy",
    "Cross-Origin-Resource-Policy",
)
_FALLBACK_VALUES = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; base-uri 'self'; object-src 'none'; "
    "frame-ancestors 'none'; upgrade-insecure-requests",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def security_header_values() -> dict[str, str]:
    try:
        from agent.config import DEFAULT_SECURITY_HEADERS

        defaults = {name.lower(): value for name, value in DEFAULT_SECURITY_HEADERS}
    except Exception:  # pragma: no cover - the agent is being edited; fall back to the known values
        defaults = {}
    return {name: defaults.get(name.lower(), _FALLBACK_VALUES[name]) for name in SIX_HEADERS}


def agent_hsts_value() -> str:
    """The Strict-Transport-Security value the agent sends on TLS requests (``security_headers.hsts_value``)."""
    try:
        from agent.config.schema import SecurityHeadersConfig

        return SecurityHeadersConfig().hsts_value
    except Exception:  # pragma: no cover - the agent is being edited; fall back to the known value
        return "max-age=63072000; includeSubDomains"


# ------------------------------------------------------------------ process hygiene
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """If this benchmark is SIGKILLed, its children get SIGTERM instead of living on."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (nginx: master + workers)."""
    try:
        proc = psutil.Process(pid)
        return [pid, *(child.pid for child in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def tree_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += cpu_ticks(pid)
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise RuntimeError(f"process {pid} disappeared during the benchmark") from exc
    return total


def tree_system_ticks(pids: list[int]) -> int:
    """The kernel's share (stime) of :func:`tree_ticks`: syscalls, the TCP stack, page faults."""
    total = 0
    for pid in pids:
        try:
            data = Path(f"/proc/{pid}/stat").read_bytes()
        except (FileNotFoundError, ProcessLookupError) as exc:
            raise RuntimeError(f"process {pid} disappeared during the benchmark") from exc
        total += int(data[data.rindex(b")") + 2 :].split()[12])
    return total


def cpu_stat(cpu: int | None) -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of one CPU (or all CPUs when unpinned) from /proc/stat."""
    name = "cpu" if cpu is None else f"cpu{cpu}"
    for line in Path("/proc/stat").read_text().splitlines():
        parts = line.split()
        if parts[0] == name:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait, steal
    raise RuntimeError(f"{name} not in /proc/stat")


class Fail(RuntimeError):
    """A check failed: the numbers would be meaningless."""


# ------------------------------------------------------------------------ HTTP utils
def connection(port: int, timeout: float, context: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """Plain HTTP, or HTTPS verified with ``context`` when one is given."""
    if context is None:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)


def http_get(
    port: int, path: str, timeout: float = 2.0, *, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes] | None:
    conn = connection(port, timeout, context)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for(
    name: str, proc: subprocess.Popen[bytes], port: int, path: str, log: Path, *, context: ssl.SSLContext | None = None
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise Fail(f"{name} exited {proc.returncode} before answering:\n{_tail(log)}")
        got = http_get(port, path, timeout=0.5, context=context)
        if got is not None and got[0] == 200:
            return time.monotonic() - started
        time.sleep(0.01)
    raise Fail(f"{name} did not answer 200 on {path} within {START_TIMEOUT_S:.0f} s:\n{_tail(log)}")


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------- configs
def nginx_user_line() -> str:
    """Workers as nobody when we are root (nginx refuses nothing, but root workers are needless)."""
    if os.geteuid() != 0:
        return ""
    try:
        nobody = pwd.getpwnam("nobody")
        return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    except KeyError:
        return "user root;"


def _nginx_common(d: Path) -> str:
    return f"""worker_processes 1;
{nginx_user_line()}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
"""


def _nginx_temp_paths(d: Path) -> str:
    # Never the packaged defaults under /var/lib/nginx.
    return "\n".join(f"  {kind}_temp_path {d}/{kind}_temp;" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def upstream_nginx_conf(d: Path, port: int) -> str:
    return (
        _nginx_common(d)
        + f"""http {{
{_nginx_temp_paths(d)}
  access_log off;
  types {{ }}
  default_type application/json;
  keepalive_requests 1000000;   # proxies keep their upstream connections for the whole run
  keepalive_timeout 75s;
  server {{
    listen 127.0.0.1:{port};
    location = {ECHO_PATH} {{
      return 200 '{ECHO_BODY}';
    }}
    location / {{
      return 200 '{BODY}';
    }}
  }}
}}
"""
    )


def proxy_nginx_conf(d: Path, port: int, upstream_port: int, headers: dict[str, str]) -> str:
    add = "\n".join(f'      add_header {name} "{value}" always;' for name, value in headers.items())
    log_format = (
        '{"time":"$time_iso8601","request_id":"$request_id","remote_addr":"$remote_addr",'
        '"method":"$request_method","path":"$uri","query":"$args","status":$status,'
        '"bytes_sent":$body_bytes_sent,"duration_s":$request_time,"upstream_s":"$upstream_response_time",'
        '"user_agent":"$http_user_agent"}'
    )
    return (
        _nginx_common(d)
        + f"""http {{
{_nginx_temp_paths(d)}
  types {{ }}
  default_type application/octet-stream;
  server_tokens off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  log_format json escape=json '{log_format}';
  access_log {d}/access.log json buffer=64k flush=1s;
  upstream app {{
    server 127.0.0.1:{upstream_port};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_hide_header Server;
      add_header X-Request-ID $request_id always;
{add}
    }}
  }}
}}
"""
    )


def haproxy_conf(
    port: int, upstream_port: int, headers: dict[str, str], tls: TlsFiles | None = None, answer_port: int | None = None
) -> str:
    """With ``tls``: TLS termination with the agent's certificate (ALPN http/1.1, as the agent),
    ``X-Forwarded-Proto: https`` and the agent's HSTS header, which it sends on TLS requests.
    With ``answer_port``: a second frontend there that answers every request itself (200, a
    small JSON body, a request id and the same headers), the floor for ``/health/ready``."""
    if tls is not None:
        headers = {**headers, "Strict-Transport-Security": tls.hsts_value}
    set_headers = "\n".join(f'  http-response set-header {name} "{value}"' for name, value in headers.items())
    bind = f"127.0.0.1:{port}" + (f" ssl crt {tls.haproxy_pem} alpn http/1.1" if tls is not None else "")
    scheme = "http" if tls is None else "https"
    return f"""global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 2s
  timeout client 75s
  timeout server 30s
  timeout http-keep-alive 75s
  # After a 101 the connection is a tunnel: this replaces client/server timeouts (WebSocket rows).
  timeout tunnel 1h

frontend main
  bind {bind}
  unique-id-format %[uuid()]
  unique-id-header X-Request-ID
  http-request set-header X-Forwarded-Proto {scheme}
  http-response set-header X-Request-ID %[unique-id]
{set_headers}
  http-response del-header Server
  default_backend app
{_answer_frontend(answer_port, set_headers)}
backend app
  http-reuse always
  server app1 127.0.0.1:{upstream_port}
"""


def agent_config(upstream_port: int, port: int, admin_port: int, tls: TlsFiles | None = None) -> dict[str, Any]:
    """Defaults (access log on, metrics, all default headers) except ports, checks, fast drain;
    with ``tls``, ``[server.tls]`` with its certificate and key (every other TLS key a default)."""
    server: dict[str, Any] = {"listen": f"127.0.0.1:{port}", "drain_delay_s": 0.0, "shutdown_timeout_s": 2.0}
    if tls is not None:
        server["tls"] = {"cert_file": str(tls.cert_pem), "key_file": str(tls.key_pem)}
    return {
        "server": server,
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
        "upstream": {"url": f"http://127.0.0.1:{upstream_port}"},
        "checks": {
            "upstream": {"type": "http", "path": "/"},
            "disk": {"enabled": False},
            "database": {"enabled": False},  # even when DATABASE_URL is set in this environment
        },
    }


# ---------------------------------------------------------------------- processes
@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    pids: list[int] = field(default_factory=list)  # process tree whose CPU is counted

    def alive(self) -> bool:
        return self.proc.poll() is None


def spawn(
    children: Children, argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return children.popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )


def start_nginx(children: Children, workdir: Path, name: str, conf: Callable[[Path], str], port: int, cpu: int | None) -> Service:
    d = workdir / name
    d.mkdir(mode=0o755)
    (d / "nginx.conf").write_text(conf(d))
    log = d / "stdout.log"
    argv = [*pin_prefix(cpu), "nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf"), "-g", "daemon off;"]
    proc = spawn(children, argv, log, d)
    wait_for(name, proc, port, "/", d / "error.log")
    service = Service(name, proc, port, d / "error.log")
    service.pids = process_tree(proc.pid)
    if len(service.pids) < 2:
        raise Fail(f"{name}: expected an nginx master and a worker, found pids {service.pids}")
    return service


def _answer_frontend(port: int | None, set_headers: str) -> str:
    if port is None:
        return ""
    answer = set_headers.replace("http-response set-header", "http-after-response set-header")
    return f"""
frontend answer
  bind 127.0.0.1:{port}
  unique-id-format %[uuid()]
  http-after-response set-header X-Request-ID %[unique-id]
{answer}
  http-request return status 200 content-type application/json string '{{"status":"ready"}}'
"""


def start_haproxy(
    children: Children,
    workdir: Path,
    port: int,
    upstream_port: int,
    headers: dict[str, str],
    cpu: int | None,
    name: str = "haproxy",
    tls: TlsFiles | None = None,
    answer_port: int | None = None,
) -> Service:
    d = workdir / name
    d.mkdir(mode=0o755)
    cfg = d / "haproxy.cfg"
    cfg.write_text(haproxy_conf(port, upstream_port, headers, tls, answer_port))
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=10)
    if check.returncode != 0:
        raise Fail(f"haproxy rejected its config:\n{check.stdout}{check.stderr}")
    log = d / "haproxy.log"
    proc = spawn(children, [*pin_prefix(cpu), "haproxy", "-f", str(cfg), "-db"], log, d)
    wait_for(name, proc, port, "/", log, context=tls.client_context() if tls else None)
    service = Service(name, proc, port, log)
    service.pids = process_tree(proc.pid)
    return service


@dataclass
class AgentService(Service):
    admin_port: int = 0
    ready_s: float = 0.0


def start_agent(
    children: Children,
    workdir: Path,
    upstream_port: int,
    cpu: int | None,
    name: str = "agent",
    tls: TlsFiles | None = None,
    tracing: dict[str, Any] | None = None,
    pure: bool = False,
) -> AgentService:
    d = workdir / name
    d.mkdir(mode=0o755)
    port, admin_port = free_port(), free_port()
    config_path = d / "agent.toml"
    config = agent_config(upstream_port, port, admin_port, tls)
    if tracing is not None:
        config["tracing"] = tracing
    config_path.write_text(to_toml(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if pure:
        env[compiled.PURE_ENV] = "1"  # the same sources, not compiled (agent/compiled.py)
    log = d / "agent.log"  # stdout (access log + app log) to a file: what production does with it
    proc = spawn(children, [*pin_prefix(cpu), sys.executable, "-m", "agent", "run", "-c", str(config_path)], log, d, env)
    ready_s = wait_for(name, proc, port, "/health/ready", log, context=tls.client_context() if tls else None)
    service = AgentService(name, proc, port, log, admin_port=admin_port, ready_s=ready_s)
    service.pids = process_tree(proc.pid)
    return service


def start_websocket_echo(children: Children, workdir: Path, cpu: int | None) -> Service:
    """``python -m bench.websocket.echo``: the WebSocket rows' upstream (nginx cannot echo)."""
    d = workdir / "ws-echo"
    d.mkdir(mode=0o755)
    port = free_port()
    log = d / "echo.log"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    argv = [*pin_prefix(cpu), sys.executable, "-m", "bench.websocket.echo", "--port", str(port)]
    proc = spawn(children, argv, log, d, env)
    wait_for("WebSocket echo server", proc, port, "/", log)
    service = Service("ws-echo", proc, port, log)
    service.pids = process_tree(proc.pid)
    return service


class WebSocketLoad(LoadGenerator):
    """``python -m bench.websocket.client``: ``connections`` WebSockets doing echo round trips."""

    def __init__(self, children: Children, connections: int, seconds: float, cpu: int | None, message_bytes: int) -> None:
        super().__init__(children, "websocket", connections, seconds, cpu, preexec_fn=_die_with_parent)
        self.message_bytes = message_bytes

    def argv(self, url: str) -> list[str]:
        return [
            sys.executable, "-m", "bench.websocket.client", url, "--connections", str(self.connections),
            "--seconds", str(self.seconds), "--message-bytes", str(self.message_bytes),
        ]  # fmt: skip


class HandshakeLoad(LoadGenerator):
    """``python -m bench.tls.handshakes``: ``connections`` workers, a new TLS connection per request."""

    def __init__(self, children: Children, connections: int, seconds: float, cpu: int | None) -> None:
        super().__init__(children, "handshakes", connections, seconds, cpu, preexec_fn=_die_with_parent)

    def argv(self, url: str) -> list[str]:
        return [
            sys.executable, "-m", "bench.tls.handshakes", url, "--connections", str(self.connections),
            "--seconds", str(self.seconds),
        ]  # fmt: skip


# ------------------------------------------------------------------------ pre-check
def precheck(row: Row, headers: dict[str, str], upstream_port: int) -> str:
    """PRECHECK_REQUESTS sequential keep-alive requests: every one 200 with the expected body and
    headers; then one request to the upstream's echo path to see what the proxy forwarded. Over
    TLS (``row.tls``, verifying): the expected certificate, and HSTS on every response. Returns
    what TLS negotiated ("" for plain HTTP)."""
    conn = connection(row.port, 5, row.tls.client_context() if row.tls else None)
    problems: list[str] = []
    ids: set[str] = set()
    negotiated = ""
    proxied = row.kind in ("proxy", "tls")
    if row.tls is not None:
        headers = {**headers, "Strict-Transport-Security": row.tls.hsts_value}
    try:
        for i in range(PRECHECK_REQUESTS):
            conn.request("GET", row.path)
            resp = conn.getresponse()
            body = resp.read()
            got = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status != 200:
                problems.append(f"request {i}: status {resp.status}, body {body[:200]!r}")
                break
            if row.kind == "health":
                continue
            if body.decode(errors="replace") != BODY:
                problems.append(f"request {i}: body {body[:200]!r}, expected {BODY!r}")
                break
            if not proxied:
                continue
            rid = got.get("x-request-id", "")
            if not rid:
                problems.append(f"request {i}: no X-Request-ID in the response")
            ids.add(rid)
            for name, value in headers.items():
                if got.get(name.lower()) != value:
                    problems.append(f"request {i}: {name} is {got.get(name.lower())!r}, expected {value!r}")
            if row.key.startswith("agent") and "server" in got:
                problems.append(f"request {i}: Server header not removed: {got['server']!r}")
            if i == 0 and row.tls is not None:
                negotiated, wrong = _tls_session(conn, row.tls)
                problems += wrong
            if problems:
                break
    except (OSError, http.client.HTTPException) as exc:
        problems.append(f"connection failed: {exc!r}")
    finally:
        conn.close()
    if proxied and not problems and len(ids) != PRECHECK_REQUESTS:
        problems.append(f"X-Request-ID not unique per request: {len(ids)} distinct in {PRECHECK_REQUESTS} responses")
    if proxied and not problems:
        got_echo = http_get(row.port, ECHO_PATH, context=row.tls.client_context() if row.tls else None)
        if got_echo is None or got_echo[0] != 200:
            problems.append(f"echo request failed: {got_echo!r}")
        else:
            seen = json.loads(got_echo[2])
            rid = got_echo[1].get("x-request-id", "")
            if seen.get("x_request_id") != rid:
                problems.append(f"upstream saw X-Request-ID {seen.get('x_request_id')!r}, client got {rid!r}")
            if row.key.startswith("agent"):
                tp = seen.get("traceparent", "")
                if len(tp.split("-")) != 4:
                    problems.append(f"upstream saw no valid traceparent from the agent: {tp!r}")
            proto = "https" if row.tls else "http"
            if seen.get("x_forwarded_proto") != proto:
                problems.append(f"upstream saw X-Forwarded-Proto {seen.get('x_forwarded_proto')!r}, expected {proto!r}")
    if problems:
        raise Fail(f"pre-check of {row.name} ({row.url}) failed:\n  " + "\n  ".join(problems[:10]))
    return negotiated


def _tls_session(conn: http.client.HTTPConnection, tls: TlsFiles) -> tuple[str, list[str]]:
    """("TLSv1.3 TLS_AES_256_GCM_SHA384, ALPN http/1.1", problems): the certificate presented
    must be the benchmark's (the verifying context already checked its chain and name)."""
    sock = conn.sock
    if not isinstance(sock, ssl.SSLSocket):
        return "", ["not a TLS connection"]
    negotiated = f"{sock.version()} {(sock.cipher() or ('?',))[0]}, ALPN {sock.selected_alpn_protocol()}"
    if hashlib.sha256(sock.getpeercert(binary_form=True) or b"").hexdigest() != tls.leaf_sha256:
        return negotiated, ["the certificate presented is not the benchmark's"]
    return negotiated, []


def precheck_websocket(row: Row) -> None:
    """One WebSocket through ``row``: the handshake (101, the right Sec-WebSocket-Accept; on the
    proxy rows an X-Request-ID on the 101), WS_PRECHECK_MESSAGES random messages of each size
    echoed byte for byte, a ping answered by its pong, and the close handshake."""
    try:
        headers = asyncio.run(
            asyncio.wait_for(websocket_check("127.0.0.1", row.port, row.path, WS_MESSAGE_BYTES, WS_PRECHECK_MESSAGES), 30)
        )
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise Fail(f"pre-check of {row.name} ({row.url}) failed: {exc!r}") from exc
    if row.service is not None and not headers.get("x-request-id"):
        raise Fail(f"pre-check of {row.name} ({row.url}) failed: no X-Request-ID on the 101: {headers}")


# ---------------------------------------------------------------------------- rows
@dataclass
class Run:
    load: LoadResult
    proxy_us_per_req: float | None  # per request; on the WebSocket rows per message
    proxy_cpu_pct: float | None
    upstream_us_per_req: float
    cpu0_other_pct: float
    load_cpu_busy_pct: float
    steal_pct: float
    client_us_per_req: float | None = None  # the load generator's own CPU, when it reports it
    main_thread_us_per_req: float | None = None  # an agent's event-loop thread alone (the rest: other threads)
    proxy_sys_us_per_req: float | None = None  # the kernel's part of proxy_us_per_req


@dataclass
class Row:
    key: str
    name: str
    kind: str  # "proxy", "direct" or "health"; "ws" for every WebSocket row; "tls" (keep-alive) and "handshake"
    port: int
    path: str
    service: Service | None  # whose CPU is counted; None for the direct rows
    load: LoadGenerator
    upstream: Service
    per_load_item: int = 1  # what CPU is divided by, per item the load counts: 2 messages per echo round trip
    tls: TlsFiles | None = None  # the row speaks TLS to the proxy (kinds "tls" and "handshake")
    runs: list[Run] = field(default_factory=list)

    @property
    def url(self) -> str:
        scheme = "ws" if self.kind == "ws" else "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.path}"

    def summary(self) -> dict[str, Any]:
        if self.kind == "ws":
            return self.websocket_summary()
        med = statistics.median
        rps = [r.load.rps for r in self.runs]
        sys_us = [r.proxy_sys_us_per_req for r in self.runs if r.proxy_sys_us_per_req is not None]
        proxy_us = [r.proxy_us_per_req for r in self.runs if r.proxy_us_per_req is not None]
        proxy_pct = [r.proxy_cpu_pct for r in self.runs if r.proxy_cpu_pct is not None]
        client_us = [r.client_us_per_req for r in self.runs if r.client_us_per_req is not None]
        main_us = [r.main_thread_us_per_req for r in self.runs if r.main_thread_us_per_req is not None]
        return {
            "key": self.key,
            "name": self.name,
            "url": self.url,
            "rps_runs": [round(x, 1) for x in rps],
            "rps_median": round(med(rps), 1),
            "rps_spread_pct": round((max(rps) - min(rps)) / med(rps) * 100, 1) if med(rps) else None,
            "p50_ms": round(med(r.load.p50_ms for r in self.runs), 3),
            "p99_ms": round(med(r.load.p99_ms for r in self.runs), 3),
            "proxy_cpu_us_per_req_runs": [round(x, 2) for x in proxy_us],
            "proxy_cpu_us_per_req": round(med(proxy_us), 2) if proxy_us else None,
            "proxy_sys_us_per_req": round(med(sys_us), 2) if sys_us else None,
            "proxy_cpu_pct": round(med(proxy_pct), 1) if proxy_pct else None,
            "upstream_cpu_us_per_req": round(med(r.upstream_us_per_req for r in self.runs), 2),
            "client_cpu_us_per_req": round(med(client_us), 2) if client_us else None,
            "main_thread_cpu_us_per_req": round(med(main_us), 2) if main_us else None,
            "cpu0_other_pct_max": round(max(r.cpu0_other_pct for r in self.runs), 1),
            "load_cpu_busy_pct": round(med(r.load_cpu_busy_pct for r in self.runs), 1),
            "steal_pct_max": round(max(r.steal_pct for r in self.runs), 1),
            "errors": sum(r.load.errors for r in self.runs),
            "requests": sum(r.load.requests for r in self.runs),
        }

    def websocket_summary(self) -> dict[str, Any]:
        """The same numbers per message (WS_MESSAGES_PER_ROUND_TRIP per echo round trip)."""
        med = statistics.median
        rates = [r.load.rps * self.per_load_item for r in self.runs]
        proxy_us = [r.proxy_us_per_req for r in self.runs if r.proxy_us_per_req is not None]
        proxy_pct = [r.proxy_cpu_pct for r in self.runs if r.proxy_cpu_pct is not None]
        client_us = [r.client_us_per_req for r in self.runs if r.client_us_per_req is not None]
        return {
            "key": self.key,
            "name": self.name,
            "url": self.url,
            "message_bytes": self.load.message_bytes if isinstance(self.load, WebSocketLoad) else None,
            "msgs_per_s_runs": [round(x, 1) for x in rates],
            "msgs_per_s_median": round(med(rates), 1),
            "rps_spread_pct": round((max(rates) - min(rates)) / med(rates) * 100, 1) if med(rates) else None,
            "round_trip_p50_ms": round(med(r.load.p50_ms for r in self.runs), 3),
            "round_trip_p99_ms": round(med(r.load.p99_ms for r in self.runs), 3),
            "proxy_cpu_us_per_msg_runs": [round(x, 2) for x in proxy_us],
            "proxy_cpu_us_per_msg": round(med(proxy_us), 2) if proxy_us else None,
            "proxy_cpu_pct": round(med(proxy_pct), 1) if proxy_pct else None,
            "upstream_cpu_us_per_msg": round(med(r.upstream_us_per_req for r in self.runs), 2),
            "client_cpu_us_per_msg": round(med(client_us), 2) if client_us else None,
            "cpu0_other_pct_max": round(max(r.cpu0_other_pct for r in self.runs), 1),
            "load_cpu_busy_pct": round(med(r.load_cpu_busy_pct for r in self.runs), 1),
            "steal_pct_max": round(max(r.steal_pct for r in self.runs), 1),
            "errors": sum(r.load.errors for r in self.runs),
            "round_trips": sum(r.load.requests for r in self.runs),
        }


def measure_once(row: Row, proxy_cpu: int | None, load_cpu: int | None) -> Run:
    pids = row.service.pids if row.service else []
    upstream = row.upstream
    agent_pid = row.service.proc.pid if isinstance(row.service, AgentService) else None
    m0 = cpu_ticks(agent_pid, agent_pid) if agent_pid else 0
    p0, u0, k0 = tree_ticks(pids), tree_ticks(upstream.pids), tree_system_ticks(pids)
    c0, s0 = cpu_stat(proxy_cpu), cpu_stat(load_cpu)
    result = row.load.run(row.url)
    p1, u1, k1 = tree_ticks(pids), tree_ticks(upstream.pids), tree_system_ticks(pids)
    m1 = cpu_ticks(agent_pid, agent_pid) if agent_pid else 0
    c1, s1 = cpu_stat(proxy_cpu), cpu_stat(load_cpu)
    done = max(result.requests * row.per_load_item, 1)  # requests, or messages on the WebSocket rows
    proxy_ticks = p1 - p0
    cpu0_total = max(c1[1] - c0[1], 1)
    return Run(
        load=result,
        proxy_us_per_req=proxy_ticks / CLK_TCK * 1e6 / done if pids else None,
        proxy_cpu_pct=proxy_ticks / CLK_TCK / result.duration_s * 100 if pids else None,
        upstream_us_per_req=(u1 - u0) / CLK_TCK * 1e6 / done,
        client_us_per_req=result.client_cpu_s * 1e6 / done if result.client_cpu_s is not None else None,
        main_thread_us_per_req=(m1 - m0) / CLK_TCK * 1e6 / done if agent_pid else None,
        proxy_sys_us_per_req=(k1 - k0) / CLK_TCK * 1e6 / done if pids else None,
        # Busy time on the proxy's CPU not charged to the proxy: other processes, interrupts, steal.
        cpu0_other_pct=max(0.0, (c1[0] - c0[0]) - proxy_ticks) / cpu0_total * 100,
        # Near 100 % with the proxy below 100 %: the load side (wrk + upstream) limits the rate.
        load_cpu_busy_pct=(s1[0] - s0[0]) / max(s1[1] - s0[1], 1) * 100,
        steal_pct=((c1[2] - c0[2]) + (s1[2] - s0[2])) / max(cpu0_total + (s1[1] - s0[1]), 1) * 100,
    )


# ------------------------------------------------------------------------- output
def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def render_table(meta: dict[str, Any], rows: list[dict[str, Any]], extra: dict[str, Any]) -> str:
    upstreams = " + ".join(
        name for name, shown in (("upstream nginx", meta["nginx"]), ("WebSocket echo server", "websocket" in extra)) if shown
    )
    lines = [
        f"sidecar-agent proxy benchmark — {meta['runs']} interleaved rounds, {meta['seconds']} s per row, "
        f"{meta['connections']} connections",
        f"proxy under test on CPU {meta['proxy_cpu']}, {upstreams} + load generator on CPU {meta['load_cpu']}; "
        f"{meta['cpus']} CPUs; Python {meta['python']} ({meta['event_loop']}); "
        f"agent {meta['agent_version']} ({meta.get('request_path', '?')}); "
        + "; ".join(v for v in (meta["haproxy"], meta["nginx"]) if v),
        "",
    ]
    if "tracing" in extra:
        lines += [*tracing_lines(meta, rows, extra["tracing"]), ""]
    else:
        http_rows = [r for r in rows if r["kind"] in ("proxy", "direct", "health")]
        if http_rows:
            lines += [*http_lines(meta, http_rows, extra), ""]
        if "tls" in extra:
            plain = extra.get("targets", {}).get("agent_vs_haproxy_cpu_ratio")
            lines += [*tls_lines(meta, [r for r in rows if r["kind"] in ("tls", "handshake")], extra["tls"], plain, PATH), ""]
    if "websocket" in extra:
        lines += [*websocket_lines(meta, [r for r in rows if r["kind"] == "ws"], extra["websocket"]), ""]
    n = extra["noise"]
    lines.append(
        f"noise: rate spread (max-min)/median per row: {', '.join(f'{k} {v:.1f}%' for k, v in n['rps_spread_pct'].items())}; "
        f"max busy on CPU {meta['proxy_cpu']} not charged to the proxy {n['cpu0_other_pct_max']:.1f}%; "
        f"max steal {n['steal_pct_max']:.1f}%; loadavg {n['loadavg_before']} -> {n['loadavg_after']}"
    )
    return "\n".join(lines)


def http_lines(meta: dict[str, Any], rows: list[dict[str, Any]], extra: dict[str, Any]) -> list[str]:
    lines = [
        f"HTTP: {meta['loadgen']} -t1 -c{meta['connections']} -d{meta['seconds']}s; "
        f"GET {PATH} -> nginx static JSON ({len(BODY)} B)",
        "",
    ]
    header = (
        "row",
        "requests/s per run",
        "median r/s",
        "p50 ms",
        "p99 ms",
        "proxy µs/req",
        "of it kernel",
        "÷HAProxy",
        "÷nginx",
        "proxy CPU%",
        "upstr µs/req",
        "proxy-CPU other%",
        "load-CPU busy%",
        "errors",
    )
    by_key = {r["key"]: r for r in rows}
    hap = by_key.get("haproxy", {}).get("proxy_cpu_us_per_req")
    ngx = by_key.get("nginx", {}).get("proxy_cpu_us_per_req")
    body = []
    for r in rows:
        us = r["proxy_cpu_us_per_req"]
        proxyish = r["kind"] == "proxy"
        body.append(
            (
                r["name"],
                " / ".join(f"{x:.0f}" for x in r["rps_runs"]),
                f"{r['rps_median']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                num(us, ".1f"),
                num(r.get("proxy_sys_us_per_req"), ".1f"),
                num(_ratio(us, hap) if proxyish else None, ".2f"),
                num(_ratio(us, ngx) if proxyish else None, ".2f"),
                num(r["proxy_cpu_pct"], ".0f"),
                f"{r['upstream_cpu_us_per_req']:.1f}",
                f"{r['cpu0_other_pct_max']:.1f}",
                f"{r['load_cpu_busy_pct']:.0f}",
                str(r["errors"]),
            )
        )
    lines += grid(header, body)
    lines.append("")
    lines.append(
        f"agent RSS: {extra['agent_rss_idle_mib']:.1f} MiB idle after start, "
        f"{extra['agent_rss_after_mib']:.1f} MiB after all load; "
        f"start -> ready {extra['agent_ready_s'] * 1000:.0f} ms"
    )
    lines.append(
        f"agent access log: {extra['agent_access_lines']} lines for {extra['agent_proxied_requests']} proxied requests; "
        f"metrics: agent_http_requests_total = {_metrics_text(extra['agent_metrics_requests'])}"
        + ("" if extra["agent_metrics_requests"] else " — proxied requests are NOT counted in the metrics")
        + f"; agent log warnings/errors: {extra['agent_log_warnings']}"
    )
    lines.extend(f"  agent log: {text}" for text in extra["agent_log_warnings_first"])
    t = extra["targets"]
    ratio = t["agent_vs_haproxy_cpu_ratio"]
    limit, ready_min = t["agent_vs_haproxy_cpu_ratio_max"], t["ready_rps_min"]
    lines.append(
        f"targets: agent µs/req ≤ {limit:g} × HAProxy's: "
        + (
            "n/a (HAProxy not installed)"
            if ratio is None
            else f"{ratio:.2f}× — {'met' if ratio <= limit else 'NOT met'} (agent {t['agent_us']:.1f} µs, "
            f"HAProxy {t['haproxy_us']:.1f} µs per request: a faster CPU makes HAProxy cheaper and the ratio larger)"
        )
        + (
            f" (per-round ratios: {', '.join(f'{x:.2f}' for x in t['agent_vs_haproxy_cpu_ratio_rounds'])}; "
            f"their median {statistics.median(t['agent_vs_haproxy_cpu_ratio_rounds']):.2f})"
            if t["agent_vs_haproxy_cpu_ratio_rounds"]
            else ""
        )
        + f"; /health/ready ≥ {ready_min:,} r/s: {t['ready_rps']:,.0f} — {'met' if t['ready_rps'] >= ready_min else 'NOT met'}"
        + (
            f" ({t['ready_us']:.1f} µs per probe; HAProxy answering a request itself on the same core: "
            f"{t['haproxy_answer_rps']:,.0f} r/s, {t['haproxy_answer_us']:.1f} µs)"
            if t.get("haproxy_answer_rps") and t.get("ready_us") and t.get("haproxy_answer_us")
            else ""
        )
    )
    return lines


# ---------------------------------------------------------------------------- main
def plan_cpus() -> tuple[int | None, int | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None
    return cpus[0], cpus[1]


def scrape_requests_total(admin_port: int) -> float | None:
    return scrape_counter(admin_port, "agent_http_requests_total")


def scrape_counter(admin_port: int, name: str) -> float | None:
    """The sum of a labelled counter's samples on the admin /metrics; None when it does not answer."""
    got = http_get(admin_port, "/metrics", timeout=5)
    if got is None or got[0] != 200:
        return None
    total = 0.0
    for line in got[2].decode(errors="replace").splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape_span_counters(admin_port: int) -> dict[str, float]:
    """``exported`` and ``dropped`` (both reasons) from an agent's ``agent_tracing_*`` families."""
    got = http_get(admin_port, "/metrics", timeout=5)
    counters = {"exported": 0.0, "dropped": 0.0}
    for line in (got[2].decode(errors="replace") if got else "").splitlines():
        if line.startswith("agent_tracing_spans_exported_total"):
            counters["exported"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("agent_tracing_spans_dropped_total{"):
            counters["dropped"] += float(line.rsplit(" ", 1)[1])
    return counters


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Bench:
    """What both row families need: the pinning, the headers and the processes to watch."""

    args: argparse.Namespace
    children: Children
    workdir: Path
    proxy_cpu: int | None
    load_cpu: int | None
    headers: dict[str, str]
    have_haproxy: bool
    hsts_value: str
    services: list[Service] = field(default_factory=list)  # each must stay alive for the whole run
    upstream: Service | None = None  # the nginx upstream, once started


@dataclass
class HttpRows:
    rows: list[Row]
    agent: AgentService
    loadgen_kind: str
    agent_rss_idle_mib: float


def loadgen_kind(args: argparse.Namespace) -> str:
    """wrk, or the Python fallback: what drives the keep-alive rows (plain and TLS)."""
    kind = "wrk" if args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk")) else "python"
    if kind == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("--loadgen wrk given but wrk is not installed")
    return kind


def nginx_upstream(bench: Bench) -> Service:
    """The static nginx upstream the HTTP and TLS rows share, started by whichever needs it first."""
    if bench.upstream is None:
        if shutil.which("nginx") is None:
            raise SystemExit("nginx is needed for the upstream: apt-get install -y nginx (or run --only ws)")
        progress("starting upstream nginx ...")
        port = free_port()
        bench.upstream = start_nginx(
            bench.children, bench.workdir, "upstream", lambda d: upstream_nginx_conf(d, port), port, bench.load_cpu
        )
        bench.services.append(bench.upstream)
    return bench.upstream


def start_http_rows(bench: Bench) -> HttpRows:
    args, children, workdir = bench.args, bench.children, bench.workdir
    kind = loadgen_kind(args)
    upstream = nginx_upstream(bench)
    up_port = upstream.port

    progress("starting agent ...")
    agent = start_agent(children, workdir, up_port, bench.proxy_cpu)
    time.sleep(IDLE_SETTLE_S)
    agent_rss_idle = rss_mib(agent.proc.pid)
    if len(agent.pids) != 1:
        progress(f"note: the agent has child processes {agent.pids[1:]}; their CPU is counted too")
    bench.services.append(agent)

    load = LoadGenerator(children, kind, args.connections, args.seconds, bench.load_cpu, preexec_fn=_die_with_parent)
    rows = [Row("agent", "agent (proxied)", "proxy", agent.port, PATH, agent, load, upstream)]
    if bench.have_haproxy:
        progress("starting HAProxy ...")
        hap_port, answer_port = free_port(), free_port()
        hap = start_haproxy(children, workdir, hap_port, up_port, bench.headers, bench.proxy_cpu, answer_port=answer_port)
        rows.append(Row("haproxy", "HAProxy (proxied)", "proxy", hap_port, PATH, hap, load, upstream))
        bench.services.append(hap)
    else:
        progress("HAProxy not installed: its row is skipped (apt-get install -y haproxy)")
    progress("starting nginx as a proxy ...")
    ngx_port = free_port()
    ngx = start_nginx(
        children, workdir, "nginx-proxy", lambda d: proxy_nginx_conf(d, ngx_port, up_port, bench.headers), ngx_port,
        bench.proxy_cpu,
    )  # fmt: skip
    bench.services.append(ngx)
    rows.append(Row("nginx", "nginx (proxied)", "proxy", ngx_port, PATH, ngx, load, upstream))
    rows.append(Row("direct", "direct to upstream", "direct", up_port, PATH, None, load, upstream))
    rows.append(Row("ready", "agent /health/ready", "health", agent.port, "/health/ready", agent, load, upstream))
    if bench.have_haproxy:  # what answering a request at all costs on this machine: the floor for the row above
        rows.append(Row("haproxy_ready", "HAProxy answering itself", "health", answer_port, "/health/ready", hap, load, upstream))
    if compiled.code.startswith("compiled"):
        progress("starting an agent on the pure-Python request path (AGENT_PURE_PYTHON=1) ...")
        pure = start_agent(children, workdir, up_port, bench.proxy_cpu, name="agent-pure", pure=True)
        bench.services.append(pure)
        rows.insert(1, Row("agent_pure", "agent, pure Python", "proxy", pure.port, PATH, pure, load, upstream))

    progress("pre-check: status, body, request ID, trace context and security headers ...")
    for row in rows:
        precheck(row, bench.headers, up_port)
    return HttpRows(rows, agent, kind, agent_rss_idle)


@dataclass
class TlsRows:
    rows: list[Row]
    agent: AgentService
    files: TlsFiles
    negotiated: dict[str, str]  # row key -> what the pre-check's handshake negotiated
    loadgen_kind: str


def start_tls_rows(bench: Bench) -> TlsRows:
    """A third agent and a third HAProxy, both terminating TLS with one certificate, in front of
    the nginx upstream: keep-alive rows (wrk over https) and new-connection rows (a full
    handshake and one request per connection)."""
    args, children, workdir = bench.args, bench.children, bench.workdir
    kind = loadgen_kind(args)
    upstream = nginx_upstream(bench)
    files = write_tls_files(workdir / "tls", bench.hsts_value)
    progress("starting an agent with TLS ...")
    agent = start_agent(children, workdir, upstream.port, bench.proxy_cpu, name="agent-tls", tls=files)
    bench.services.append(agent)
    ends: list[tuple[str, str, Service]] = [("agent", "agent", agent)]
    if bench.have_haproxy:
        progress("starting a HAProxy with TLS ...")
        hap = start_haproxy(children, workdir, free_port(), upstream.port, bench.headers, bench.proxy_cpu, "haproxy-tls", files)
        bench.services.append(hap)
        ends.append(("haproxy", "HAProxy", hap))
    keepalive = LoadGenerator(children, kind, args.connections, args.seconds, bench.load_cpu, preexec_fn=_die_with_parent)
    handshakes = HandshakeLoad(children, args.connections, args.seconds, bench.load_cpu)
    rows = [Row(f"{key}_tls", f"{name} (TLS keep-alive)", "tls", end.port, PATH, end, keepalive, upstream, tls=files)
            for key, name, end in ends]  # fmt: skip
    rows += [Row(f"{key}_tls_handshake", f"{name} (TLS, new connections)", "handshake", end.port, PATH, end, handshakes,
                 upstream, tls=files)
             for key, name, end in ends]  # fmt: skip
    progress("pre-check over TLS: certificate, status, body, request ID, trace context, security headers, HSTS ...")
    negotiated = {row.key: precheck(row, bench.headers, upstream.port) for row in rows if row.kind == "tls"}
    return TlsRows(rows, agent, files, negotiated, kind)


@dataclass
class WebSocketRows:
    rows: list[Row]
    agent: AgentService
    echo: Service


def start_websocket_rows(bench: Bench) -> WebSocketRows:
    """The echo server, a second agent and a second HAProxy in front of it (same configs)."""
    args, children, workdir = bench.args, bench.children, bench.workdir
    progress("starting the WebSocket echo server ...")
    echo = start_websocket_echo(children, workdir, bench.load_cpu)
    progress("starting an agent in front of it ...")
    agent = start_agent(children, workdir, echo.port, bench.proxy_cpu, name="agent-ws")
    bench.services += [echo, agent]
    hap = None
    if bench.have_haproxy:
        progress("starting a HAProxy in front of it ...")
        hap = start_haproxy(children, workdir, free_port(), echo.port, bench.headers, bench.proxy_cpu, name="haproxy-ws")
        bench.services.append(hap)
    rows = []
    for size in WS_MESSAGE_BYTES:
        label, key = (f"{size} B", str(size)) if size < 1024 else (f"{size // 1024} KiB", f"{size // 1024}k")
        load = WebSocketLoad(children, args.connections, args.seconds, bench.load_cpu, size)
        ends = [("agent", "agent", agent), ("haproxy", "HAProxy", hap), ("direct", "direct", None)]
        for end_key, end_name, service in ends:
            if end_key == "haproxy" and service is None:
                continue
            port = echo.port if service is None else service.port
            rows.append(
                Row(f"{end_key}_ws_{key}", f"{end_name} (ws {label})", "ws", port, WS_PATH, service, load, echo,
                    WS_MESSAGES_PER_ROUND_TRIP)
            )  # fmt: skip
    progress("pre-check: WebSocket handshake, echoes byte for byte, ping, close ...")
    for row in rows[: len(rows) // len(WS_MESSAGE_BYTES)]:  # one check per endpoint covers every size
        precheck_websocket(row)
    return WebSocketRows(rows, agent, echo)


RATIO_BY_KEY = {row_key(ratio): ratio for ratio in (None, *RATIOS)}


@dataclass
class TracingRows:
    rows: list[Row]
    agents: dict[str, AgentService]  # by row key
    loadgen_kind: str
    upstream_port: int = 0
    sink_port: int = 0
    generation: int = 1

    def fresh_agents(self, bench: Bench, round_no: int) -> None:
        """New agent processes for this round (the first round uses the ones started with the rows).

        Two agent processes with the same config differ by a few % in CPU per request (measured:
        32.9 vs 34.5 µs, same hash seed, no ASLR), as much as the effect these rows look for; a
        process per row per round turns that into noise the median over rounds handles, instead of
        a bias that stays with one row for the whole run."""
        if round_no == 1:
            return
        self.generation += 1
        for row in self.rows:
            old = self.agents.get(row.key)
            if old is None:
                continue
            bench.children.stop(old.proc)
            bench.services.remove(old)
            agent = start_tracing_agent(bench, RATIO_BY_KEY[row.key], self.upstream_port, self.sink_port, self.generation)
            self.agents[row.key] = agent
            row.service, row.port = agent, agent.port
            warm_up(row)


def start_tracing_agent(bench: Bench, ratio: float | None, upstream_port: int, sink_port: int, generation: int) -> AgentService:
    """An agent with the HTTP rows' config and ``[tracing]`` at ``ratio`` (None: off), on the proxy CPU."""
    name = row_key(ratio) if generation == 1 else f"{row_key(ratio)}-{generation}"
    agent = start_agent(
        bench.children, bench.workdir, upstream_port, bench.proxy_cpu, name=name, tracing=tracing_section(sink_port, ratio)
    )
    bench.services.append(agent)
    return agent


def start_tracing_rows(bench: Bench) -> TracingRows:
    """The upstream, the OTLP sink (both on the load CPU), an agent per tracing setting and HAProxy."""
    args, children, workdir = bench.args, bench.children, bench.workdir
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is needed for the upstream and the OTLP sink: apt-get install -y nginx")
    loadgen_kind = "wrk" if args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk")) else "python"
    progress("starting upstream nginx and the OTLP sink ...")
    up_port, sink_port = free_port(), free_port()
    upstream = start_nginx(children, workdir, "upstream", lambda d: upstream_nginx_conf(d, up_port), up_port, bench.load_cpu)
    sink = start_nginx(
        children, workdir, "otlp-sink", lambda d: sink_nginx_conf(_nginx_common(d), _nginx_temp_paths(d), sink_port), sink_port,
        bench.load_cpu,
    )  # fmt: skip
    bench.services += [upstream, sink]
    load = LoadGenerator(children, loadgen_kind, args.connections, args.seconds, bench.load_cpu, preexec_fn=_die_with_parent)
    rows, agents = [], {}
    for ratio in (None, *RATIOS):
        key = row_key(ratio)
        progress(f"starting {row_name(ratio)} ...")
        agent = start_tracing_agent(bench, ratio, up_port, sink_port, 1)
        agents[key] = agent
        rows.append(Row(key, row_name(ratio), "proxy", agent.port, PATH, agent, load, upstream))
    if bench.have_haproxy:
        progress("starting HAProxy ...")
        hap_port = free_port()
        hap = start_haproxy(children, workdir, hap_port, up_port, bench.headers, bench.proxy_cpu)
        rows.append(Row("haproxy", "HAProxy (proxied)", "proxy", hap_port, PATH, hap, load, upstream))
        bench.services.append(hap)
    progress("pre-check: status, body, request ID, trace context and security headers ...")
    for row in rows:
        precheck(row, bench.headers, up_port)
    return TracingRows(rows, agents, loadgen_kind, up_port, sink_port)


def tracing_results(tracing: TracingRows, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    time.sleep(2.0)  # the export worker sends what is queued at least once a second
    spans = {key: scrape_span_counters(agent.admin_port) for key, agent in tracing.agents.items()}
    keys = {row.key for row in tracing.rows}
    return {
        "sink": "nginx returning an empty 200 for POST /v1/traces, pinned with the upstream and the load generator",
        "spans": spans,
        "targets": tracing_targets({s["key"]: s for s in summaries if s["key"] in keys}),
    }


def warm_up(row: Row) -> int:
    """One ``WARMUP_S`` load run on ``row``, which must have no errors; the requests it made."""
    progress(f"warm-up {WARMUP_S} s: {row.name}")
    warm = copy.copy(row.load)
    warm.seconds = WARMUP_S
    result = warm.run(row.url)
    if result.errors:
        raise Fail(f"warm-up of {row.name}: {result.errors} errors (non-2xx/3xx, socket or echo) in {result.requests}")
    return result.requests


def measure_rounds(bench: Bench, rows: list[Row], before_round: Callable[[Bench, int], None] | None = None) -> dict[str, int]:
    """A warm-up per row, then ``--runs`` rounds of every row; the warm-ups' counts by row key.
    ``before_round(bench, round_no)`` runs before each round (the tracing rows' fresh agents)."""
    warmup = {row.key: warm_up(row) for row in rows}
    runs = bench.args.runs
    for round_no in range(1, runs + 1):
        if before_round is not None:
            before_round(bench, round_no)
        # The first round in the listed order, then each round in its own shuffled order (seeded:
        # the same run gives the same orders): what ran just before a row, and where in the round
        # it runs, changes from round to round instead of always favouring the same row.
        order = list(rows)
        if round_no > 1:
            random.Random(round_no).shuffle(order)
        for row in order:
            progress(f"round {round_no}/{runs}: {row.name} ...")
            row.runs.append(measure_once(row, bench.proxy_cpu, bench.load_cpu))
            for service in bench.services:
                if not service.alive():
                    raise Fail(f"{service.name} died during {row.name!r} (exit {service.proc.returncode}):\n{_tail(service.log)}")
    return warmup


def run(args: argparse.Namespace, children: Children, workdir: Path) -> dict[str, Any]:
    proxy_cpu, load_cpu = plan_cpus()
    have_haproxy = shutil.which("haproxy") is not None
    bench = Bench(args, children, workdir, proxy_cpu, load_cpu, security_header_values(), have_haproxy, agent_hsts_value())
    loadavg_before = Path("/proc/loadavg").read_text().split()[0]
    http = start_http_rows(bench) if args.only in (None, "http") else None
    tls = start_tls_rows(bench) if args.only in (None, "tls") else None
    ws = start_websocket_rows(bench) if args.only in (None, "ws") else None
    tracing = start_tracing_rows(bench) if args.only == "tracing" else None
    rows = [
        *(http.rows if http else []),
        *(tls.rows if tls else []),
        *(ws.rows if ws else []),
        *(tracing.rows if tracing else []),
    ]
    warmup = measure_rounds(bench, rows, tracing.fresh_agents if tracing else None)

    summaries = [row.summary() | {"kind": row.kind} for row in rows]
    all_runs = [run_ for row in rows for run_ in row.runs]
    meta = {
        "seconds": args.seconds,
        "connections": args.connections,
        "runs": args.runs,
        "only": args.only or "all",
        "loadgen": http.loadgen_kind if http else tls.loadgen_kind if tls else tracing.loadgen_kind if tracing else None,
        "proxy_cpu": proxy_cpu if proxy_cpu is not None else "unpinned",
        "load_cpu": load_cpu if load_cpu is not None else "unpinned",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "event_loop": _event_loop(),
        "request_path": compiled.code,
        "agent_version": _agent_version(),
        "haproxy": _version(["haproxy", "-v"]) if have_haproxy else "HAProxy not installed",
        "nginx": _version(["nginx", "-v"]) if http or tls or tracing else None,
        "clk_tck": CLK_TCK,
        "path": PATH,
        "body_bytes": len(BODY),
    }
    extra: dict[str, Any] = {}
    if http:
        extra |= http_results(http, warmup, summaries)
    if tls:
        extra["tls"] = tls_results(tls, warmup, summaries)
    if ws:
        extra["websocket"] = websocket_results(ws, warmup, summaries, args)
    if tracing:
        extra["tracing"] = tracing_results(tracing, summaries)
    extra["noise"] = {
        "rps_spread_pct": {s["key"]: s["rps_spread_pct"] for s in summaries},
        "cpu0_other_pct_max": round(max(r.cpu0_other_pct for r in all_runs), 1),
        "steal_pct_max": round(max(r.steal_pct for r in all_runs), 1),
        "loadavg_before": loadavg_before,
        "loadavg_after": Path("/proc/loadavg").read_text().split()[0],
    }
    return {
        "bench": "sidecar-agent/proxy",
        "meta": meta,
        "rows": summaries,
        **extra,
        "_table": render_table(meta, summaries, extra),
    }


def http_results(http: HttpRows, warmup: dict[str, int], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    agent = http.agent
    rows = http.rows
    agent_rss_after = rss_mib(agent.proc.pid)
    time.sleep(1.5)  # the agent's access log is batched; let the last batch reach the file
    # Every request to PATH the agent answered: pre-check, warm-up and measured runs (wrk counts only
    # completed responses, so the log may hold up to `connections` more lines per load run).
    agent_proxied = PRECHECK_REQUESTS + warmup["agent"] + sum(r.load.requests for r in rows[0].runs)
    agent_access_lines, agent_log_problems, agent_log_first = _scan_agent_log(agent.log, PATH)
    metrics_total = scrape_requests_total(agent.admin_port)
    ready_after = http_get(agent.port, "/health/ready")

    by_key = {s["key"]: s for s in summaries}
    agent_us = by_key["agent"]["proxy_cpu_us_per_req"]
    hap_us = by_key.get("haproxy", {}).get("proxy_cpu_us_per_req")
    ngx_us = by_key["nginx"]["proxy_cpu_us_per_req"]
    hap_row = next((row for row in rows if row.key == "haproxy"), None)
    return {
        "agent_rss_idle_mib": round(http.agent_rss_idle_mib, 1),
        "agent_rss_after_mib": round(agent_rss_after, 1),
        "agent_ready_s": round(agent.ready_s, 3),
        "agent_access_lines": agent_access_lines,
        "agent_log_warnings": agent_log_problems,
        "agent_log_warnings_first": agent_log_first,
        "agent_proxied_requests": agent_proxied,
        "agent_metrics_requests": metrics_total,
        "agent_ready_after_load": ready_after[0] if ready_after else None,
        "ratios": {
            "agent_vs_haproxy_cpu": _ratio(agent_us, hap_us),
            "agent_vs_nginx_cpu": _ratio(agent_us, ngx_us),
            "agent_vs_haproxy_rps": _ratio(by_key["agent"]["rps_median"], by_key.get("haproxy", {}).get("rps_median")),
            "agent_vs_nginx_rps": _ratio(by_key["agent"]["rps_median"], by_key["nginx"]["rps_median"]),
        },
        "targets": {
            "agent_vs_haproxy_cpu_ratio": _ratio(agent_us, hap_us),
            "agent_vs_haproxy_cpu_ratio_rounds": _round_ratios(rows[0], hap_row),
            "agent_vs_haproxy_cpu_ratio_max": HTTP_TARGET_RATIO,
            "agent_us": agent_us,
            "haproxy_us": hap_us,
            "ready_rps": by_key["ready"]["rps_median"],
            "ready_rps_min": READY_TARGET_RPS,
            "ready_us": by_key["ready"]["proxy_cpu_us_per_req"],
            "haproxy_answer_rps": by_key.get("haproxy_ready", {}).get("rps_median"),
            "haproxy_answer_us": by_key.get("haproxy_ready", {}).get("proxy_cpu_us_per_req"),
        },
    }


def tls_results(tls: TlsRows, warmup: dict[str, int], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The 2.5x keep-alive target, the new-connection ratio, and the TLS agent's log and metrics."""
    time.sleep(1.5)  # the access log is batched
    by_key = {s["key"]: s for s in summaries}
    rows = {row.key: row for row in tls.rows}
    ratios = {}
    for suffix in ("tls", "tls_handshake"):
        agent_us = by_key[f"agent_{suffix}"]["proxy_cpu_us_per_req"]
        hap_us = by_key.get(f"haproxy_{suffix}", {}).get("proxy_cpu_us_per_req")
        ratios[suffix] = {
            "agent_us": agent_us,
            "haproxy_us": hap_us,
            "agent_vs_haproxy_cpu_ratio": _ratio(agent_us, hap_us),
            "agent_vs_haproxy_cpu_ratio_rounds": _round_ratios(rows[f"agent_{suffix}"], rows.get(f"haproxy_{suffix}")),
        }
    ratios["tls"]["agent_vs_haproxy_cpu_ratio_max"] = TLS_TARGET_RATIO
    agent_rows = [row for row in tls.rows if row.service is tls.agent]
    # Every request to PATH the TLS agent answered: the pre-check, warm-ups and measured runs.
    proxied = PRECHECK_REQUESTS + sum(warmup[row.key] + sum(r.load.requests for r in row.runs) for row in agent_rows)
    access_lines, problems, first = _scan_agent_log(tls.agent.log, PATH)
    return {
        "certificate": f"{KEY_TYPE} leaf from a trustme CA, the same files for both proxies",
        "negotiated": tls.negotiated,
        "keepalive": ratios["tls"],
        "handshake": ratios["tls_handshake"],
        "agent_proxied_requests": proxied,
        "agent_access_lines": access_lines,
        "agent_log_warnings": problems,
        "agent_log_warnings_first": first,
        "agent_handshake_errors": scrape_counter(tls.agent.admin_port, "agent_tls_handshake_errors_total"),
        "agent_rss_after_mib": round(rss_mib(tls.agent.proc.pid), 1),
    }


def websocket_results(
    ws: WebSocketRows, warmup: dict[str, int], summaries: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """The 2x target per message size, and the agent's tunnel access-log lines against the tunnels."""
    time.sleep(1.5)  # the access log is batched
    by_key = {s["key"]: s for s in summaries}
    rows = {row.key: row for row in ws.rows}
    targets = {}
    for size in WS_MESSAGE_BYTES:
        key = str(size) if size < 1024 else f"{size // 1024}k"
        agent_us = by_key[f"agent_ws_{key}"]["proxy_cpu_us_per_msg"]
        hap_us = by_key.get(f"haproxy_ws_{key}", {}).get("proxy_cpu_us_per_msg")
        targets[key] = {
            "message_bytes": size,
            "agent_us_per_msg": agent_us,
            "haproxy_us_per_msg": hap_us,
            "agent_vs_haproxy_cpu_ratio": _ratio(agent_us, hap_us),
            "agent_vs_haproxy_cpu_ratio_rounds": _round_ratios(rows[f"agent_ws_{key}"], rows.get(f"haproxy_ws_{key}")),
            "agent_vs_haproxy_cpu_ratio_max": WS_TARGET_RATIO,
        }
    agent_rows = [row for row in ws.rows if row.service is ws.agent]
    tunnels = 1 + args.connections * (len(agent_rows) + sum(len(row.runs) for row in agent_rows))  # pre-check, warm-ups, runs
    access_lines, problems, first = _scan_agent_log(ws.agent.log, WS_PATH)
    return {
        "definition": "1 echo round trip = 2 messages through the proxy (client->app, app->client); "
        "msgs/s = 2 x round trips/s; proxy us/msg = proxy CPU / messages; p50/p99 = round-trip time",
        "echo_server": "python -m bench.websocket.echo (asyncio Protocol on uvloop), pinned with the client",
        "targets": targets,
        "agent_tunnels": tunnels,
        "agent_tunnel_access_lines": access_lines,
        "agent_log_warnings": problems,
        "agent_log_warnings_first": first,
        "agent_rss_after_mib": round(rss_mib(ws.agent.proc.pid), 1),
    }


def _round_ratios(agent_row: Row, hap_row: Row | None) -> list[float]:
    if hap_row is None:
        return []
    return [
        round(a.proxy_us_per_req / h.proxy_us_per_req, 2)
        for a, h in zip(agent_row.runs, hap_row.runs, strict=True)
        if a.proxy_us_per_req and h.proxy_us_per_req
    ]


def _metrics_text(value: float | None) -> str:
    return "no answer from the admin /metrics" if value is None else f"{value:.0f}"


def _scan_agent_log(log: Path, path_text: str) -> tuple[int, int, list[str]]:
    """(access-log lines for ``path_text``, warning/error lines, the first few of those) in the agent's stdout."""
    access = problems = 0
    first: list[str] = []
    path = path_text.encode()
    with log.open("rb") as f:
        for line in f:
            if b'"logger":"agent.access"' in line:
                access += path in line
            elif (
                b'"level":"WARNING"' in line
                or b'"level":"ERROR"' in line
                or b'"level":"CRITICAL"' in line
                or not line.startswith(b"{")
            ):
                if b"draining" in line:  # the agent's own SIGTERM drain (not during the measurement)
                    continue
                problems += 1
                if len(first) < 3:
                    first.append(line.decode(errors="replace").strip()[:300])
    return access, problems, first


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
        text = (out.stdout or out.stderr).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"
    return text.split(" - ")[0].replace("nginx version: ", "").strip()


def _event_loop() -> str:
    try:
        import uvloop  # noqa: F401

        return "uvloop"
    except ImportError:
        return "asyncio"


def _agent_version() -> str:
    try:
        from agent import __version__

        return __version__
    except Exception:  # pragma: no cover - informational only
        return "?"


def run_guarded(prefix: str, keep_workdir: bool, body: Callable[[Children, Path], dict[str, Any]]) -> dict[str, Any] | int:
    """``body(children, workdir)`` with every child stopped and the temp dir removed on any exit
    (Ctrl-C and SIGTERM included); its result, or the exit code (130 interrupted, 1 failed)."""
    children = Children()
    # Explicit handlers: a SIGINT inherited as "ignored" (background jobs) must still stop us.
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)  # nginx workers run as nobody
    try:
        return body(children, workdir)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every child process", file=sys.stderr)
        return 130
    except Fail as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if keep_workdir:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load run (default 10)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds; every row runs once per round (default 3)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto", help="default: wrk if installed")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (configs, logs) for inspection")
    parser.add_argument(
        "--only",
        choices=("http", "tls", "ws", "tracing"),
        help="only the plain HTTP rows, the TLS rows, the WebSocket echo rows (default: these three, interleaved), "
        "or the tracing rows (tracing off and at sample_ratio 0, 0.01, 1.0, beside HAProxy; never in the default run)",
    )
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.connections < 1 or args.runs < 1:
        parser.error("--seconds, --connections and --runs must be >= 1")

    result = run_guarded("bench-proxy-", args.keep_workdir, lambda children, workdir: run(args, children, workdir))
    if isinstance(result, int):
        return result
    table = result.pop("_table")
    print(table)
    status = 0
    bad = [r["name"] for r in result["rows"] if r["errors"]]
    if bad:
        print(f"WARNING: errors (non-2xx/3xx, socket or echo) during the measured runs of: {', '.join(bad)}", file=sys.stderr)
        status = 1
    if args.only in (None, "http"):
        status = max(status, _http_warnings(result))
    if "tls" in result:
        status = max(status, _tls_warnings(result["tls"]))
    ws = result.get("websocket")
    if ws is not None and ws["agent_tunnel_access_lines"] < ws["agent_tunnels"]:
        print("WARNING: fewer access-log lines from the WebSocket agent than tunnels it carried", file=sys.stderr)
    line = json.dumps(result, separators=(",", ":"))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(line + "\n")
    print(line)
    return status


def _tls_warnings(tls: dict[str, Any]) -> int:
    if tls["agent_access_lines"] < tls["agent_proxied_requests"]:
        print("WARNING: fewer access-log lines from the TLS agent than requests it answered", file=sys.stderr)
    if tls["agent_handshake_errors"] != 0:
        print(f"WARNING: the TLS agent counted {tls['agent_handshake_errors']} failed handshakes", file=sys.stderr)
        return 1
    return 0


def _http_warnings(result: dict[str, Any]) -> int:
    status = 0
    if not result["agent_metrics_requests"]:
        print("WARNING: the agent's /metrics does not count the proxied requests (metrics not wired?)", file=sys.stderr)
    if result["agent_access_lines"] < result["agent_proxied_requests"]:
        print("WARNING: fewer agent access-log lines than proxied requests", file=sys.stderr)
    if result["agent_ready_after_load"] != 200:
        print(f"WARNING: /health/ready answered {result['agent_ready_after_load']} after the load", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
