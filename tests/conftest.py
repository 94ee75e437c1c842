"""Shared fixtures: a real PostgreSQL, a real upstream app, the real agent as a subprocess, and the
agent in the test's own event loop with scripted checks."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from agent.admin.app import AdminApp
from agent.checks.base import CheckResult
from tests.support.admin_client import AdminClient, serve_admin
from tests.support.agent import AgentProcess
from tests.support.inprocess import InProcessAgent, scripted_agent, scripted_results
from tests.support.postgres import PostgresServer
from tests.support.upstream import UpstreamProcess, start_upstream_process


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One real PostgreSQL cluster for the session (scram password auth)."""
    server = PostgresServer(tmp_path_factory.mktemp("pg"))
    server.start()
    yield server
    server.close()


@pytest.fixture
def running_pg(pg: PostgresServer) -> Iterator[PostgresServer]:
    """The session cluster, guaranteed running and not hung before and after the test."""
    pg.resume()
    if not pg.is_running():
        pg.restart()
    yield pg
    pg.resume()
    if not pg.is_running():
        pg.restart()


@pytest.fixture(scope="session")
def upstream() -> Iterator[UpstreamProcess]:
    """A real upstream HTTP app (aiohttp, subprocess) shared by the session; reset per test."""
    with start_upstream_process() as process:
        yield process


@pytest.fixture
def healthy_upstream(upstream: UpstreamProcess) -> Iterator[UpstreamProcess]:
    upstream.set_mode("healthy")
    yield upstream
    upstream.set_mode("healthy")


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """``agent_factory(config_dict, env=..., tls=...)`` -> a started agent; all are stopped after the test.
    ``tls``: the client context for its TLS listeners (default: one that verifies nothing)."""
    agents: list[AgentProcess] = []

    def make(
        config: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        start: bool = True,
        name: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> AgentProcess:
        agent = AgentProcess(tmp_path / (name or f"agent{len(agents)}"), config, env=env, tls=tls)
        agents.append(agent)
        return agent.start() if start else agent

    yield make
    for agent in agents:
        agent.stop()


@pytest.fixture
def results() -> dict[str, CheckResult]:
    """What each scripted check answers; a test changes an entry to change what the next run sees."""
    return scripted_results()


@pytest.fixture
async def admin_client() -> AsyncIterator[Callable[[AdminApp], Awaitable[AdminClient]]]:
    """``await admin_client(app)`` -> the admin app served as the agent serves it, and a client for it."""
    clients: list[AdminClient] = []

    async def serve(app: AdminApp) -> AdminClient:
        clients.append(await serve_admin(app))
        return clients[-1]

    yield serve
    for client in clients:
        await client.close()


@pytest.fixture
async def make_agent(results: dict[str, CheckResult]) -> AsyncIterator[Callable[..., Awaitable[InProcessAgent]]]:
    """``await make_agent(admin={"token": ...})`` -> an in-process agent whose scripted checks have all run."""
    async with AsyncExitStack() as stack:

        async def make(**overrides: dict[str, Any]) -> InProcessAgent:
            return await stack.enter_async_context(scripted_agent(results, **overrides))

        yield make


def fast_checks(upstream_url: str, dsn: str | None = None, **health: Any) -> dict[str, Any]:
    """A config with quick check timings, for tests that watch state change."""
    config: dict[str, Any] = {
        "server": {"drain_delay_s": 0.5, "shutdown_timeout_s": 5.0},
        "upstream": {"url": upstream_url},
        "health": {"interval_s": 0.3, "timeout_s": 0.5, "failure_threshold": 2, "success_threshold": 1, **health},
        "checks": {"disk": {"enabled": False}},
    }
    if dsn is not None:
        config["checks"]["database"] = {"type": "postgres", "dsn": dsn}
    return config
