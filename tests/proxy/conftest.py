"""Module-scoped agents for the proxy tests (one real agent subprocess per config).

Each test module that asks for one gets its own agent; the tests of a module share its logs
(they find their lines by request id or error id).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.agent import AgentProcess, proxy_config
from tests.support.net import free_port
from tests.support.rawupstream import RawUpstream
from tests.support.upstream import UpstreamProcess

# Small deadlines so the timeout tests stay quick.
MAIN_PROXY = {
    "max_body_bytes": 1024 * 1024,
    "header_timeout_s": 2.0,
    "body_timeout_s": 1.0,
    "min_body_rate_bytes_s": 1024.0,
    "keepalive_timeout_s": 5.0,
}
MAIN_UPSTREAM = {"read_timeout_s": 1.5, "connect_timeout_s": 1.0}


@pytest.fixture(scope="module")
def main_agent(upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """Defaults, except small body limit and deadlines; no trusted proxies."""
    upstream.set_mode("healthy")
    agent = AgentProcess(
        tmp_path_factory.mktemp("main"), proxy_config(upstream.url, proxy=MAIN_PROXY, upstream=MAIN_UPSTREAM)
    ).start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def trusted_agent(upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """127.0.0.1/32 is a trusted proxy (the tests connect from it)."""
    agent = AgentProcess(
        tmp_path_factory.mktemp("trusted"), proxy_config(upstream.url, proxy={**MAIN_PROXY, "trusted_proxies": ["127.0.0.1/32"]})
    ).start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def passthrough_agent(upstream: UpstreamProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    agent = AgentProcess(
        tmp_path_factory.mktemp("passthrough"), proxy_config(upstream.url, proxy={"error_bodies": "passthrough"})
    ).start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def dead_upstream_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """The upstream port is closed: every proxied request is a 502."""
    agent = AgentProcess(tmp_path_factory.mktemp("dead"), proxy_config(f"http://127.0.0.1:{free_port()}")).start()
    yield agent
    agent.stop()


@pytest.fixture(scope="module")
def raw_upstream() -> Iterator[RawUpstream]:
    server = RawUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def raw_agent(raw_upstream: RawUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent in front of the misbehaving raw upstream."""
    agent = AgentProcess(
        tmp_path_factory.mktemp("raw"), proxy_config(raw_upstream.url, upstream={"read_timeout_s": 1.5, "connect_timeout_s": 1.0})
    ).start()
    yield agent
    agent.stop()
