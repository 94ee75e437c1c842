"""Who may change the agent through the admin listener (SPEC §10): without ``admin.token`` only a
loopback peer; with one, whoever sends it. ``/metrics`` and the health endpoints stay open.

The non-loopback peer is real: a network namespace the test makes, joined by a veth pair on a
private /30 (:mod:`tests.support.netns`); nothing goes through the machine's external address.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from agent.admin.app import AdminApp
from agent.admin.auth import LOOPBACK_ONLY, Access, admin_access, is_loopback
from agent.admin.http import Headers, Request, Response
from tests.admin.admin_apps import admin_app, make_config
from tests.conftest import fast_checks
from tests.support.admin_client import serve_admin
from tests.support.agent import http_get
from tests.support.inprocess import ADMIN_TOKEN
from tests.support.net import free_port
from tests.support.netns import NetnsLink, NetnsUnavailable, netns_link

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OPEN_PATHS = ("/metrics", "/health", "/health/live", "/health/ready", "/health/startup")


# --- the rule, without I/O -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:127.9.8.7", True),
        ("10.200.0.2", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("192.0.2.2", False),
        ("localhost", False),  # a peer is an address; a name never counts
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(host, expected):
    assert is_loopback(host) is expected


@pytest.mark.parametrize(
    ("is_change", "peer", "is_token_set", "has_credentials", "is_cross_origin", "expected"),
    [
        # No token: reads open to anyone, changes only from loopback.
        (False, "10.0.0.7", False, False, False, Access.ALLOWED),
        (True, "127.0.0.1", False, False, False, Access.ALLOWED),
        (True, "::1", False, False, False, Access.ALLOWED),
        (True, "10.0.0.7", False, False, False, Access.UNAUTHORIZED),
        (True, None, False, False, False, Access.UNAUTHORIZED),
        # A token: needed from every peer, loopback included, for reads and changes alike.
        (True, "127.0.0.1", True, False, False, Access.UNAUTHORIZED),
        (False, "127.0.0.1", True, False, False, Access.UNAUTHORIZED),
        (True, "10.0.0.7", True, True, False, Access.ALLOWED),
        (False, "10.0.0.7", True, True, False, Access.ALLOWED),
        # Another origin's browser never changes anything, token, loopback or not.
        (True, "127.0.0.1", False, False, True, Access.CROSS_ORIGIN),
        (True, "127.0.0.1", True, True, True, Access.CROSS_ORIGIN),
    ],
)
def test_admin_access(is_change, peer, is_token_set, has_credentials, is_cross_origin, expected):
    decided = admin_access(
        is_change=is_change,
        peer=peer,
        is_token_set=is_token_set,
        has_credentials=has_credentials,
        is_cross_origin=is_cross_origin,
    )
    assert decided is expected


async def test_the_gate_reads_the_socket_peer_not_headers():
    called: list[str] = []

    async def handler(request: Request) -> Response:
        called.append(request.path)
        return Response(200, b"{}", content_type="application/json")

    app = admin_app(make_config())
    app.put("/change", handler)
    app.post("/change", handler)
    app.get("/read", handler)

    async def ask(method: str, path: str, peer: str | None, headers: dict[str, str] | None = None) -> Response:
        return await app.handle(Request(method, path, Headers((headers or {}).items()), peer=peer))

    spoofed = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
    refused = await ask("PUT", "/change", "10.0.0.7", spoofed)
    assert refused.status == 401 and (refused.headers.get("WWW-Authenticate") or "").startswith("Bearer")
    assert json.loads(refused.body)["message"] == LOOPBACK_ONLY
    assert (await ask("PUT", "/change", None)).status == 401  # no peer: not loopback
    for peer in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert (await ask("POST", "/change", peer)).status == 200, peer
    assert (await ask("GET", "/read", "10.0.0.7")).status == 200
    assert called == ["/change"] * 3 + ["/read"]


# --- in process, from loopback ---------------------------------------------------------------


async def test_without_a_token_loopback_drains(make_agent):
    agent = await make_agent()
    response = await agent.admin.post("/admin/drain")
    assert response.status == 200 and (await response.json())["draining"] is True
    assert (await agent.main.get("/health/ready")).status == 503
    assert (await agent.admin.post("/admin/undrain")).status == 200
    assert agent.monitor.draining is False


async def test_with_a_token_loopback_needs_it_too(make_agent):
    agent = await make_agent(admin={"token": ADMIN_TOKEN})
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = await agent.admin.post("/admin/drain", headers=headers)
        assert refused.status == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="sidecar-agent admin"'
        body = await refused.json()
        assert body["error_code"] == "UNAUTHORIZED" and "bearer token" in body["message"]
    assert agent.monitor.draining is False
    assert (await agent.admin.post("/admin/drain", headers=BEARER)).status == 200
    assert agent.monitor.draining is True
    for path in OPEN_PATHS:  # probes and scrapes never need the token
        assert (await agent.admin.get(path)).status in (200, 503), path
    assert (await agent.admin.get("/metrics")).status == 200
    assert (await agent.admin.post("/admin/undrain", headers=BEARER)).status == 200


def app_with_new_route(token: str = "") -> tuple[AdminApp, list[str]]:
    """The real admin app plus a new state-changing route registered the plain way (as a future one would be)."""
    calls: list[str] = []

    async def set_level(request: Request) -> Response:
        calls.append(request.method)
        return Response(200, b'{"level": "DEBUG"}', content_type="application/json")

    app = admin_app(make_config(admin={"token": token}))
    app.put("/admin/future-switch", set_level)
    return app, calls


async def test_a_new_state_changing_route_gets_the_rule_without_asking(admin_client):
    app, calls = app_with_new_route(ADMIN_TOKEN)
    client = await admin_client(app)
    assert (await client.put("/admin/future-switch")).status == 401
    assert (await client.put("/admin/future-switch", headers={"Origin": "http://evil.example"} | BEARER)).status == 403
    assert (await client.put("/admin/future-switch", headers=BEARER)).status == 200
    assert (await client.get("/admin/future-switch")).status == 405  # a 405 changes nothing: answered as it is
    assert calls == ["PUT"]


# --- from another network namespace ----------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[NetnsLink]:
    try:
        with netns_link() as link:
            yield link
    except NetnsUnavailable as exc:
        pytest.skip(f"no network namespace: {exc}")


def statuses(answers: list[dict[str, Any]]) -> list[int]:
    return [answer["status"] for answer in answers]


def test_from_another_namespace_changes_are_refused_and_reads_open(agent_factory, healthy_upstream, netns):
    """The issue's attack: the default 0.0.0.0 listener, no token, a POST from outside the pod."""
    port = free_port()
    config = fast_checks(healthy_upstream.url)
    config["admin"] = {"listen": f"0.0.0.0:{port}"}
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)

    drain, undrain, bogus, *reads = netns.http(
        port,
        [
            ("POST", "/admin/drain", {}),
            ("POST", "/admin/undrain", {}),
            ("POST", "/admin/drain", {"Authorization": "Bearer anything", "X-Forwarded-For": "127.0.0.1"}),
            *[("GET", path, {}) for path in OPEN_PATHS],
        ],
    )
    for refused in (drain, undrain, bogus):
        assert refused["status"] == 401
        assert refused["headers"]["WWW-Authenticate"] == 'Bearer realm="sidecar-agent admin"'
        assert json.loads(refused["body"])["message"] == LOOPBACK_ONLY
    assert statuses(reads) == [200] * len(OPEN_PATHS)
    assert "agent_ready 1.0" in reads[0]["body"]
    assert agent.get("/health/ready").status == 200  # still in its Service
    refusals = [r for r in agent.log_records() if r.get("status") == 401 and r.get("path") == "/admin/drain"]
    assert refusals and all(r["client_ip"] == netns.peer_ip for r in refusals if "client_ip" in r)

    # The same listener from loopback: kubectl exec keeps working.
    local = f"http://127.0.0.1:{port}"
    assert http_get(f"{local}/admin/drain", method="POST").status == 200
    assert agent.get("/health/ready").status == 503
    assert http_get(f"{local}/admin/undrain", method="POST").status == 200


def test_from_another_namespace_the_token_opens_changes(agent_factory, healthy_upstream, netns):
    config = fast_checks(healthy_upstream.url)
    config["admin"] = {"listen": f"{netns.host_ip}:{free_port(netns.host_ip)}", "token": ADMIN_TOKEN}
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=10)
    port = int(config["admin"]["listen"].rsplit(":", 1)[1])
    refused, drained = netns.http(port, [("POST", "/admin/drain", {}), ("POST", "/admin/drain", BEARER)])
    assert (refused["status"], drained["status"]) == (401, 200)
    assert json.loads(drained["body"]) == {"draining": True, "reason": "admin", "ready": False}
    assert agent.get("/health/ready").status == 503
    assert statuses(netns.http(port, [("POST", "/admin/undrain", BEARER), ("GET", "/metrics", {})])) == [200, 200]
    assert agent.get("/health/ready").status == 200


async def test_from_another_namespace_a_new_route_is_refused(netns):
    app, calls = app_with_new_route()
    client = await serve_admin(app, host=netns.host_ip)
    try:
        answers = await asyncio.to_thread(
            netns.http,
            client.port,
            [("PUT", "/admin/future-switch", {}), ("PUT", "/admin/log-level", {}), ("GET", "/metrics", {})],
        )
    finally:
        await client.close()
    assert statuses(answers) == [401, 401, 200]
    assert calls == []
