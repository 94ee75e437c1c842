"""What is not a good TLS client on the TLS port: plain HTTP, scanner garbage, an old protocol version.

Each is closed without a single byte of plain HTTP back, counted in
``agent_tls_handshake_errors_total{reason}`` (scraped from the plain-HTTP admin listener) and
logged at most once a second per reason; connections of good clients go on undisturbed.
"""

from __future__ import annotations

import datetime
import http.client
import os
import ssl
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.agent import AgentProcess, proxy_config
from tests.support.pki import Pki
from tests.support.reports import records, scrape
from tests.support.tls_peer import handshake, raw_exchange, refusal
from tests.support.upstream import UpstreamProcess
from tests.tls.conftest import listener_tls

REASONS = ("http_request", "protocol_version", "client_certificate", "cipher", "alpn", "other")
PLAIN_REQUESTS = (
    b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi",
    b"HEAD / HTTP/1.0\r\n\r\n",
)
GARBAGE = (
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",  # a scanner trying every port
    os.urandom(64),
    b"\x00" * 64,
    b"\x16\x03\x01\x00\x05hello",  # a TLS record header around nonsense
)


def start(tmp_path_factory: pytest.TempPathFactory, upstream: UpstreamProcess, pki: Pki, **tls: str) -> AgentProcess:
    config = proxy_config(upstream.url, server={"tls": listener_tls(pki.server, **tls)})
    return AgentProcess(tmp_path_factory.mktemp("handshakes"), config, tls=pki.client_context()).start()


@pytest.fixture(scope="module")
def agent(upstream: UpstreamProcess, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = start(tmp_path_factory, upstream, pki)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tls13_agent(upstream: UpstreamProcess, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = start(tmp_path_factory, upstream, pki, min_version="TLSv1.3")
    yield process
    process.stop()


def failures(agent: AgentProcess) -> dict[str, float]:
    """``agent_tls_handshake_errors_total{listener="main"}`` by reason."""
    samples = scrape(agent)
    return {
        reason: samples[("agent_tls_handshake_errors_total", frozenset({("listener", "main"), ("reason", reason)}))]
        for reason in REASONS
    }


def increase(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {reason: after[reason] - before[reason] for reason in REASONS if after[reason] != before[reason]}


def test_plain_http_on_the_tls_port_gets_no_answer_and_is_counted(agent: AgentProcess) -> None:
    before = failures(agent)
    for request in PLAIN_REQUESTS:
        reply = raw_exchange(agent.port, request)
        assert b"HTTP/" not in reply, reply[:200]
    assert increase(before, failures(agent)) == {"http_request": len(PLAIN_REQUESTS)}


def test_scanner_garbage_is_counted_as_other(agent: AgentProcess) -> None:
    before = failures(agent)
    for garbage in GARBAGE:
        reply = raw_exchange(agent.port, garbage)
        assert b"HTTP/" not in reply, reply[:200]
    assert increase(before, failures(agent)) == {"other": len(GARBAGE)}


def test_failed_handshakes_are_logged_at_most_once_a_second_per_reason(agent: AgentProcess) -> None:
    time.sleep(1.1)  # past the previous tests' lines
    started = time.time()
    for _ in range(5):
        raw_exchange(agent.port, PLAIN_REQUESTS[0])
    time.sleep(0.2)
    lines = [
        r
        for r in records(agent, "TLS handshake failed", listener="main", reason="http_request")
        if _epoch(r["timestamp"]) >= started - 0.01
    ]
    assert len(lines) == 1, lines
    assert lines[0]["level"] == "INFO" and lines[0]["detail"] == "HTTP_REQUEST"


def test_good_connections_are_undisturbed(agent: AgentProcess, pki: Pki) -> None:
    conn = http.client.HTTPSConnection("127.0.0.1", agent.port, timeout=5, context=pki.client_context())
    try:
        for i in range(6):
            raw_exchange(agent.port, PLAIN_REQUESTS[0] if i % 2 else GARBAGE[0])
            conn.request("GET", f"/echo?n={i}")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert agent.get("/health/live").status == 200  # a new good handshake meanwhile
    finally:
        conn.close()


def test_min_version_tls13_refuses_a_tls12_only_client(tls13_agent: AgentProcess, pki: Pki) -> None:
    before = failures(tls13_agent)
    old = pki.client_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    # asyncio and uvloop close the connection without sending OpenSSL's alert: the client sees an
    # EOF in the handshake, not "protocol version".
    assert isinstance(refusal(tls13_agent.port, old), ssl.SSLError)
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--cacert", pki.ca_file, "--tls-max", "1.2", f"{tls13_agent.url}/health/live"],
        capture_output=True,
        timeout=10,
    )
    assert done.returncode == 35, done.stderr  # CURLE_SSL_CONNECT_ERROR
    assert increase(before, failures(tls13_agent)) == {"protocol_version": 2}
    assert handshake(tls13_agent.port, pki.client_context()).version == "TLSv1.3"
    assert tls13_agent.get("/health/ready").status == 200


def _epoch(timestamp: str) -> float:
    """The log's ``2026-12-05T09:02:14.891Z`` as Unix time."""
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
