"""HAProxy 2.6 as the load balancer in front of two agents that serve TLS.

HAProxy health-checks ``GET /health/ready`` over TLS (``check check-ssl``) and forwards traffic
through the same TLS: one server does not verify the agent (``verify none``, what many setups do),
the other verifies it against the CA with SNI and offers ``h2`` besides ``http/1.1`` (the agent
must pick ``http/1.1``). State and session counters come from HAProxy's ``show stat``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.agent import AgentProcess, http_get, proxy_config
from tests.support.haproxy import HAProxy, is_down, is_up
from tests.support.net import free_port
from tests.support.pki import Pki
from tests.support.reports import scrape
from tests.support.upstream import UpstreamProcess
from tests.tls.conftest import listener_tls

CHECK = "check check-ssl inter 300ms fall 2 rise 2"

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not on PATH (apt-get install haproxy)")


def handshake_errors(agent: AgentProcess) -> float:
    return sum(v for (name, _), v in scrape(agent).items() if name == "agent_tls_handshake_errors_total")


def test_haproxy_checks_and_forwards_through_the_agents_tls(
    tmp_path: Path, pki: Pki, upstream: UpstreamProcess, agent_factory: Callable[..., AgentProcess]
) -> None:
    config = proxy_config(upstream.url, server={"tls": listener_tls(pki.server)}, health={"interval_s": 0.3})
    agents = {name: agent_factory(config, name=name, tls=pki.client_context()) for name in ("unverified", "verified")}
    options = {
        "unverified": f"ssl verify none {CHECK}",
        "verified": f"ssl verify required ca-file {pki.ca_file} sni str(localhost) check-sni localhost alpn h2,http/1.1 {CHECK}",
    }
    haproxy = HAProxy(tmp_path, free_port(), [(name, a.port) for name, a in agents.items()], server_options=options)
    haproxy.validate()

    def diagnostics() -> str:
        return f"--- haproxy ---\n{haproxy.output()}\n" + "\n".join(f"--- {n}\n{a.output()[-2000:]}" for n, a in agents.items())

    try:
        haproxy.start()
        haproxy.wait_status(dict.fromkeys(agents, is_up), timeout=10, why="both UP over TLS checks", diagnostics=diagnostics)

        before = haproxy.stot()
        for i in range(20):
            response = http_get(f"{haproxy.url}/echo?n={i}")
            assert response.status == 200, diagnostics()
            headers = json.loads(response.body)["headers"]
            assert [v for k, v in headers if k.lower() == "x-forwarded-proto"] == ["https"]
        after = haproxy.stot()
        assert all(after[name] > before[name] for name in agents), (before, after)
        assert sum(after.values()) - sum(before.values()) == 20, (before, after)

        # A drained agent answers 503 on its TLS readiness endpoint: HAProxy takes it out.
        assert agents["unverified"].get("/admin/drain", admin=True, method="POST").status == 200
        haproxy.wait_status({"unverified": is_down}, timeout=10, why="drained agent DOWN", diagnostics=diagnostics)
        before = haproxy.stot()
        assert [http_get(f"{haproxy.url}/echo").status for _ in range(10)] == [200] * 10
        after = haproxy.stot()
        assert after["unverified"] == before["unverified"] and after["verified"] - before["verified"] == 10
    finally:
        haproxy.stop()

    # HAProxy's checks and forwarded connections were all good TLS clients.
    assert {name: handshake_errors(agent) for name, agent in agents.items()} == dict.fromkeys(agents, 0)
