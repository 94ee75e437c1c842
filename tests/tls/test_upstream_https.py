"""The agent talking TLS to an app that serves HTTPS itself (``upstream.url = "https://..."``).

The app is a small aiohttp server with a trustme certificate, in a thread of the test process; it
counts the handshakes it sees (its SNI callback runs once per ClientHello) and the client ports
its requests come from. The agent's main listener is plain HTTP here: what is tested is the leg
to the app.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.agent import AgentProcess, proxy_config
from tests.support.https_app import HttpsApp
from tests.support.net import free_port
from tests.support.pki import Pki, write_pair
from tests.support.polling import wait_until
from tests.support.reports import records, upstream_errors, wait_for_log

VERIFY_OFF_WARNING = "upstream.tls.verify = false: the app's certificate is NOT verified; anyone on the path can impersonate it"


def start(agent_factory: Callable[..., AgentProcess], url: str, **tls: Any) -> AgentProcess:
    return agent_factory(proxy_config(url, upstream={"tls": tls, "connect_timeout_s": 2.0}))


def failed_request(agent: AgentProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET /echo must be the agent's 502: (its JSON body, the ERROR line that says why)."""
    response = agent.get("/echo")
    assert response.status == 502, response.body
    body = response.json()
    lines = wait_for_log(agent, lambda r: r.get("message") == "request failed" and r.get("error_id") == body["error_id"])
    assert len(lines) == 1, agent.output()[-2000:]
    return body, lines[0]


def assert_reason_not_in_body(body: dict[str, Any]) -> None:
    text = json.dumps(body).lower()
    for word in ("certificate", "verify", "ssl", "hostname", "issuer"):
        assert word not in text, body


def test_a_verified_https_app_is_served_over_pooled_connections(pki: Pki, agent_factory: Callable[..., AgentProcess]) -> None:
    with HttpsApp(pki.server) as app:
        agent = start(agent_factory, app.url, ca_file=pki.ca_file)
        for _ in range(10):
            response = agent.get("/echo")
            assert response.status == 200, response.body
        assert app.server_names == ["localhost"]  # SNI from the URL's host
        assert (app.handshakes, app.connections) == (1, 1), "one handshake, one connection for ten requests"


def test_an_app_certificate_from_an_unknown_ca_is_a_502_with_the_reason_only_in_the_log(
    pki: Pki, agent_factory: Callable[..., AgentProcess]
) -> None:
    with HttpsApp(pki.server) as app:
        agent = start(agent_factory, app.url, ca_file=pki.other_ca_file)
        body, line = failed_request(agent)
    assert body["error_code"] == "UPSTREAM_UNAVAILABLE", body
    assert_reason_not_in_body(body)
    assert line["level"] == "ERROR" and "unable to get local issuer certificate" in line["reason"], line
    assert upstream_errors(agent).get("connect") == 1


def test_a_wrong_name_is_a_502_and_server_name_puts_it_right(
    tmp_path: Path, pki: Pki, agent_factory: Callable[..., AgentProcess]
) -> None:
    app_pair = write_pair(pki.ca.issue_cert("app.internal"), tmp_path, "app")  # no localhost, no IP
    with HttpsApp(app_pair) as app:
        wrong = start(agent_factory, app.url, ca_file=pki.ca_file)
        body, line = failed_request(wrong)
        assert body["error_code"] == "UPSTREAM_UNAVAILABLE"
        assert_reason_not_in_body(body)
        assert "Hostname mismatch" in line["reason"], line

        right = start(agent_factory, f"https://127.0.0.1:{app.port}", ca_file=pki.ca_file, server_name="app.internal")
        assert right.get("/echo").status == 200
        assert app.server_names[-1] == "app.internal"


def test_verify_false_is_served_with_a_warning_at_start(pki: Pki, agent_factory: Callable[..., AgentProcess]) -> None:
    with HttpsApp(pki.server) as app:
        agent = start(agent_factory, app.url, verify=False)  # no ca_file: the system store would refuse trustme's CA
        assert agent.get("/echo").status == 200
    (warning,) = records(agent, VERIFY_OFF_WARNING)
    assert warning["level"] == "WARNING" and warning["upstream"] == app.url


def test_the_app_requiring_a_client_certificate_gets_the_agents(pki: Pki, agent_factory: Callable[..., AgentProcess]) -> None:
    with HttpsApp(pki.server, client_ca_file=pki.ca_file) as app:
        agent = start(agent_factory, app.url, ca_file=pki.ca_file, cert_file=pki.client.cert_file, key_file=pki.client.key_file)
        response = agent.get("/echo")
        assert response.status == 200, response.body
        assert ["commonName", "client.internal"] in [attribute for rdn in response.json()["client_subject"] for attribute in rdn]

        without = start(agent_factory, app.url, ca_file=pki.ca_file)
        body, line = failed_request(without)
    assert body["error_code"] == "UPSTREAM_UNAVAILABLE"
    assert_reason_not_in_body(body)
    assert line["reason"], line


def test_an_app_refusing_the_agents_missing_certificate_is_a_502_that_says_so(
    pki: Pki, agent_factory: Callable[..., AgentProcess]
) -> None:
    # OpenSSL's own server sends the TLS 1.3 "certificate required" alert that asyncio apps never flush.
    port = free_port()
    command = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", pki.server.cert_file, "-key", pki.server.key_file]
    command += ["-CAfile", pki.ca_file, "-Verify", "1", "-www", "-quiet"]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: _listening(port), timeout=5), "openssl s_server did not start"
        without = start(agent_factory, f"https://localhost:{port}", ca_file=pki.ca_file)
        body, line = failed_request(without)
        assert body["error_code"] == "UPSTREAM_UNAVAILABLE"
        assert_reason_not_in_body(body)
        assert "CERTIFICATE_REQUIRED" in line["reason"], line

        cert = {"cert_file": pki.client.cert_file, "key_file": pki.client.key_file}
        served = start(agent_factory, f"https://localhost:{port}", ca_file=pki.ca_file, **cert)
        assert served.get("/").status == 200  # s_server -www answers any GET with its status page
    finally:
        server.terminate()
        server.wait(5)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
