"""The main and admin listeners over TLS, spoken to by real clients: curl, ``http.client``/``ssl``,
aiohttp, ``sidecar-agent probe``.

One agent serves both listeners with a trustme certificate for ``localhost``/``127.0.0.1``; the
app behind it is the real upstream app, which echoes the headers it got.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.agent import AgentProcess, http_get, proxy_config
from tests.support.console_script import console_script_env
from tests.support.pki import Pki
from tests.support.reports import metric
from tests.support.tls_peer import handshake
from tests.support.upstream import UpstreamProcess
from tests.tls.conftest import listener_tls

HSTS = "max-age=63072000; includeSubDomains"
HEALTH_PATHS = ("/health/live", "/health/ready", "/health/startup", "/health")


@pytest.fixture(scope="module")
def agent(upstream: UpstreamProcess, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = proxy_config(upstream.url, server={"tls": listener_tls(pki.server)}, admin={"tls": listener_tls(pki.server)})
    process = AgentProcess(tmp_path_factory.mktemp("https"), config, tls=pki.client_context()).start()
    yield process
    process.stop()


def curl(*args: str) -> tuple[int, str, dict[str, str], str]:
    """``curl -i``: (exit code, status line, response headers with lower-case names, body)."""
    done = subprocess.run(["curl", "-sS", "-i", "--max-time", "5", *args], capture_output=True, timeout=10)
    if done.returncode != 0:
        return done.returncode, "", {}, done.stderr.decode()
    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return 0, status, headers, body


def forwarded(body: str | bytes, name: str) -> list[str]:
    """The values the app got for header ``name`` (the upstream app's ``/echo`` body)."""
    return [value for key, value in json.loads(body)["headers"] if key.lower() == name.lower()]


# --------------------------------------------------------------------------- curl
def test_curl_verifying_the_ca_reaches_the_app_as_https(agent: AgentProcess, pki: Pki) -> None:
    code, status, headers, body = curl("--cacert", pki.ca_file, f"{agent.url}/echo")
    assert code == 0, body
    assert status == "HTTP/1.1 200 OK"
    assert forwarded(body, "X-Forwarded-Proto") == ["https"]
    assert headers["strict-transport-security"] == HSTS


def test_curl_refuses_the_certificate_without_the_ca_and_is_served_with_k(agent: AgentProcess) -> None:
    code, _, _, stderr = curl(f"{agent.url}/echo")
    assert code == 60, stderr  # "Peer certificate cannot be authenticated with given CA certificates"
    code, status, headers, body = curl("-k", f"{agent.url}/echo")
    assert (code, status) == (0, "HTTP/1.1 200 OK"), body
    assert forwarded(body, "X-Forwarded-Proto") == ["https"]
    assert headers["strict-transport-security"] == HSTS


def test_a_client_cannot_tell_the_app_its_request_was_plain_http(agent: AgentProcess, pki: Pki) -> None:
    code, _, _, body = curl("--cacert", pki.ca_file, "-H", "X-Forwarded-Proto: http", f"{agent.url}/echo")
    assert code == 0, body
    assert forwarded(body, "X-Forwarded-Proto") == ["https"]


def test_curl_asking_for_http2_gets_http11(agent: AgentProcess, pki: Pki) -> None:
    code, status, _, body = curl("--cacert", pki.ca_file, "--http2", f"{agent.url}/health/live")
    assert (code, status) == (0, "HTTP/1.1 200 OK"), body


# --------------------------------------------------------------------------- Python clients
def test_health_endpoints_answer_over_one_verified_keep_alive_connection(agent: AgentProcess, pki: Pki) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", agent.port, timeout=5, context=pki.client_context())
    try:
        for path in (*HEALTH_PATHS, "/echo"):
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (path, body)
            assert response.headers["Strict-Transport-Security"] == HSTS, path
            if path == "/health":
                assert response.headers["Content-Type"].startswith("application/json")
        assert forwarded(body, "X-Forwarded-Proto") == ["https"]
        assert isinstance(conn.sock, ssl.SSLSocket) and conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        conn.close()


async def test_aiohttp_client_is_proxied_to_the_app_as_https(agent: AgentProcess, pki: Pki) -> None:
    connector = aiohttp.TCPConnector(ssl=pki.client_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(3):  # on one pooled connection
            async with session.get(f"{agent.url}/echo") as response:
                assert response.status == 200
                assert response.headers["Strict-Transport-Security"] == HSTS
                echoed = await response.json()
        async with session.get(f"{agent.url}/health/ready") as response:
            assert response.status == 200
    assert [v for k, v in echoed["headers"] if k == "X-Forwarded-Proto"] == ["https"]


def test_alpn_offers_only_http11(agent: AgentProcess, pki: Pki) -> None:
    both = pki.client_context()
    both.set_alpn_protocols(["h2", "http/1.1"])
    assert handshake(agent.port, both).alpn == "http/1.1"
    h2_only = pki.client_context()
    h2_only.set_alpn_protocols(["h2"])
    assert handshake(agent.port, h2_only).alpn is None  # never h2


def test_the_agents_own_refusal_over_tls_carries_hsts(agent: AgentProcess, pki: Pki) -> None:
    # HTTP/1.1 without Host: refused by the agent itself before any exchange exists.
    raw = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
    with pki.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /echo HTTP/1.1\r\n\r\n")
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        response.read()
    assert response.status == 400
    assert response.headers["Strict-Transport-Security"] == HSTS


# --------------------------------------------------------------------------- probe
@pytest.mark.parametrize("by", ["url", "config"])
def test_probe_ready_over_https_exits_0(agent: AgentProcess, tmp_path: Path, by: str) -> None:
    args = ["--url", f"https://127.0.0.1:{agent.port}"] if by == "url" else ["-c", str(agent.config_path)]
    done = subprocess.run(
        ["sidecar-agent", "probe", "ready", *args],
        env=console_script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("probe ready: 200")


def test_probe_with_plain_http_on_the_tls_port_fails(agent: AgentProcess, tmp_path: Path) -> None:
    done = subprocess.run(
        ["sidecar-agent", "probe", "ready", "--url", f"http://127.0.0.1:{agent.port}"],
        env=console_script_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr


# --------------------------------------------------------------------------- admin
def test_admin_metrics_over_https(agent: AgentProcess, pki: Pki) -> None:
    response = agent.get("/metrics", admin=True)
    assert response.status == 200
    assert response.headers["Strict-Transport-Security"] == HSTS
    text = response.body.decode()
    not_after = pki.server.leaf.not_valid_after_utc.timestamp()
    for listener in ("main", "admin"):
        assert metric(agent, "agent_tls_certificate_expiry_timestamp_seconds", listener=listener) == not_after, text
    assert agent.get("/health", admin=True).json()["status"] in ("pass", "warn")


def test_plain_http_to_the_admin_listener_is_closed_and_counted(agent: AgentProcess) -> None:
    before = metric(agent, "agent_tls_handshake_errors_total", listener="admin", reason="http_request")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        http_get(f"http://127.0.0.1:{agent.admin_port}/metrics")
    after = metric(agent, "agent_tls_handshake_errors_total", listener="admin", reason="http_request")
    assert before is not None and after == before + 1
