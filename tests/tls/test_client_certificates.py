"""Client certificates (mTLS) on the main listener: ``client_auth`` require, optional, and no
``client_ca_file`` at all; the verified certificate in the access log and, with
``proxy.forward_client_cert``, to the app as Envoy's ``X-Forwarded-Client-Cert``; one sent by a
client never reaches the app.

Three agents in front of the real upstream app, whose ``/echo`` shows the headers it got. The
plain-HTTP admin listener is where the handshake failures are read.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from tests.support.agent import AgentProcess, proxy_config
from tests.support.pki import Pair, Pki, issue_client, name
from tests.support.reports import metric, wait_for_log
from tests.support.tls_peer import refusal
from tests.support.upstream import UpstreamProcess
from tests.tls.conftest import listener_tls

FORGED = 'Hash=0000;Subject="CN=admin";DNS=admin.internal'


def start(
    tmp_path_factory: pytest.TempPathFactory, upstream: UpstreamProcess, pki: Pki, *, forward: bool, **tls: str
) -> AgentProcess:
    config = proxy_config(upstream.url, server={"tls": listener_tls(pki.server, **tls)}, proxy={"forward_client_cert": forward})
    return AgentProcess(tmp_path_factory.mktemp("mtls"), config, tls=pki.client_context(pki.client)).start()


@pytest.fixture(scope="module")
def require_agent(upstream: UpstreamProcess, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """client_ca_file set, client_auth left to its default (require); nothing forwarded."""
    process = start(tmp_path_factory, upstream, pki, forward=False, client_ca_file=pki.ca_file)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def optional_agent(upstream: UpstreamProcess, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    process = start(tmp_path_factory, upstream, pki, forward=True, client_ca_file=pki.ca_file, client_auth="optional")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def no_ca_agent(upstream: UpstreamProcess, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """No client_ca_file: no certificate is asked for, so none is forwarded even with forwarding on."""
    process = start(tmp_path_factory, upstream, pki, forward=True)
    yield process
    process.stop()


def echo(agent: AgentProcess, context: ssl.SSLContext, headers: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """GET /echo through the agent: (the request id, the X-Forwarded-Client-Cert values the app got)."""
    request_id = uuid.uuid4().hex
    conn = http.client.HTTPSConnection("127.0.0.1", agent.port, timeout=5, context=context)
    try:
        conn.request("GET", "/echo", headers={"X-Request-ID": request_id, **(headers or {})})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, body
    got: list[list[str]] = json.loads(body)["headers"]
    return request_id, [value for key, value in got if key.lower() == "x-forwarded-client-cert"]


def access_line(agent: AgentProcess, request_id: str) -> dict[str, Any]:
    found = wait_for_log(agent, lambda r: r.get("message") == "request completed" and r.get("request_id") == request_id)
    assert len(found) == 1, found
    return found[0]


def client_certificate_failures(agent: AgentProcess) -> float | None:
    return metric(agent, "agent_tls_handshake_errors_total", listener="main", reason="client_certificate")


def xfcc(value: str) -> dict[str, list[str]]:
    """Envoy's ``Key=value;Key="quoted"`` elements of one certificate (quoted-pairs undone), as lists:
    ``DNS`` and ``URI`` repeat."""
    fields: dict[str, list[str]] = {}
    for key, raw in _XFCC_ELEMENT.findall(value):
        fields.setdefault(key, []).append(re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw)
    return fields


_XFCC_ELEMENT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^;]*)')


# --------------------------------------------------------------------------- require
def test_require_refuses_a_client_without_a_certificate(require_agent: AgentProcess, pki: Pki) -> None:
    before = client_certificate_failures(require_agent)
    assert isinstance(refusal(require_agent.port, pki.client_context()), OSError)
    assert client_certificate_failures(require_agent) == (before or 0) + 1


def test_require_refuses_a_certificate_from_another_ca(require_agent: AgentProcess, pki: Pki) -> None:
    before = client_certificate_failures(require_agent)
    assert isinstance(refusal(require_agent.port, pki.client_context(pki.stranger)), OSError)
    assert client_certificate_failures(require_agent) == (before or 0) + 1


def test_require_serves_a_valid_certificate_and_forwards_nothing(require_agent: AgentProcess, pki: Pki) -> None:
    request_id, forwarded = echo(require_agent, pki.client_context(pki.client), {"X-Forwarded-Client-Cert": FORGED})
    assert forwarded == []  # forwarding is off, and the client's own header is removed
    assert access_line(require_agent, request_id)["client_cert_subject"] == pki.client.leaf.subject.rfc4514_string()


# --------------------------------------------------------------------------- optional
def test_optional_serves_a_client_without_a_certificate(optional_agent: AgentProcess, pki: Pki) -> None:
    request_id, forwarded = echo(optional_agent, pki.client_context(), {"X-Forwarded-Client-Cert": FORGED})
    assert forwarded == []  # nothing verified, and the forged header is gone
    assert "client_cert_subject" not in access_line(optional_agent, request_id)


def test_optional_logs_and_forwards_a_verified_certificate(optional_agent: AgentProcess, pki: Pki) -> None:
    request_id, forwarded = echo(optional_agent, pki.client_context(pki.client), {"X-Forwarded-Client-Cert": FORGED})
    assert len(forwarded) == 1, forwarded  # the agent's, never the client's
    fields = xfcc(forwarded[0])
    assert fields == {
        "Hash": [pki.client.der_sha256],
        "Subject": [pki.client.leaf.subject.rfc4514_string()],
        "DNS": ["client.internal"],
    }
    assert access_line(optional_agent, request_id)["client_cert_subject"] == fields["Subject"][0]


def test_optional_still_refuses_a_certificate_from_another_ca(optional_agent: AgentProcess, pki: Pki) -> None:
    before = client_certificate_failures(optional_agent)
    assert isinstance(refusal(optional_agent.port, pki.client_context(pki.stranger)), OSError)
    assert client_certificate_failures(optional_agent) == (before or 0) + 1


def test_forwarded_certificate_has_uri_sans_and_an_escaped_subject(
    optional_agent: AgentProcess, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> None:
    spiffe = "spiffe://cluster.local/ns/shop/sa/web"
    client: Pair = issue_client(
        pki.ca,
        tmp_path_factory.mktemp("spiffe"),
        "web",
        subject=name(CN="web", O='Acme, "Shop" Inc.'),
        sans=[x509.UniformResourceIdentifier(spiffe), x509.DNSName("web.shop"), x509.DNSName("web")],
    )
    _, forwarded = echo(optional_agent, pki.client_context(client))
    fields = xfcc(forwarded[0])
    assert fields["URI"] == [spiffe] and fields["DNS"] == ["web.shop", "web"]
    assert fields["Hash"] == [client.der_sha256]
    # RFC 4514, as Envoy prints it: the comma inside the organization is escaped.
    assert fields["Subject"] == [client.leaf.subject.rfc4514_string()] == ['CN=web,O=Acme\\, \\"Shop\\" Inc.']


# --------------------------------------------------------------------------- no client_ca_file
def test_without_client_ca_file_a_certificate_is_neither_asked_for_nor_forwarded(no_ca_agent: AgentProcess, pki: Pki) -> None:
    request_id, forwarded = echo(no_ca_agent, pki.client_context(pki.client), {"X-Forwarded-Client-Cert": FORGED})
    assert forwarded == []
    assert "client_cert_subject" not in access_line(no_ca_agent, request_id)
    request_id, forwarded = echo(no_ca_agent, pki.client_context(pki.stranger))
    assert forwarded == []
