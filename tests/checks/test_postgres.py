"""The postgres check against a real PostgreSQL: up, stopped, hung, restarted, misconfigured."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.checks.base import Status, run_check
from agent.checks.postgres import PostgresProbe
from agent.config import PostgresSettings
from agent.secrets import Redactor, Secret


def make_probe(dsn: str, *, timeout_s: float = 1.0, **kwargs) -> PostgresProbe:
    return PostgresProbe(PostgresSettings(dsn=Secret(dsn), **kwargs), timeout_s=timeout_s)


def other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_pass_with_observations(running_pg):
    probe = make_probe(running_pg.dsn)
    try:
        result = await run_check(probe.check, 1.0, Redactor([running_pg.password]))
        assert result.status is Status.PASS, result.message
        assert result.observations["in_recovery"] is False
        assert result.observations["server_version"].startswith("15")
        assert 0 < result.observations["connections_used"] <= result.observations["max_connections"]
        assert 0 < result.observations["connections_used_ratio"] < 1
    finally:
        await probe.close()


async def test_reuses_one_connection(running_pg):
    """A dedicated connection: ten runs open one backend, never one per run."""
    probe = make_probe(running_pg.dsn)
    try:
        for _ in range(10):
            assert (await run_check(probe.check, 1.0, Redactor([]))).status is Status.PASS
        backends = running_pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sidecar-agent'")
        assert backends.strip() == "1"
    finally:
        await probe.close()


async def test_warns_on_connections_ratio(running_pg):
    probe = make_probe(running_pg.dsn, warn_connections_ratio=0.01)
    try:
        result = await run_check(probe.check, 1.0, Redactor([]))
        assert result.status is Status.WARN
        assert "connections in use" in result.message
    finally:
        await probe.close()


@pytest.mark.slow
async def test_stopped_then_restarted_recovers_without_new_probe(running_pg):
    probe = make_probe(running_pg.dsn)
    redact = Redactor([running_pg.password])
    try:
        assert (await run_check(probe.check, 1.0, redact)).status is Status.PASS
        running_pg.stop("immediate")
        down = await run_check(probe.check, 1.0, redact)
        assert down.status is Status.FAIL
        assert running_pg.password not in (down.message or "")
        running_pg.restart()
        # The old connection died with the server; the first run after the restart reconnects.
        up = await run_check(probe.check, 2.0, redact)
        assert up.status is Status.PASS, up.message
    finally:
        await probe.close()


@pytest.mark.slow
async def test_hung_server_fails_by_timeout_and_leaves_nothing_behind(running_pg):
    probe = make_probe(running_pg.dsn, timeout_s=0.5)
    redact = Redactor([running_pg.password])
    assert (await run_check(probe.check, 0.5, redact)).status is Status.PASS
    before = other_tasks()
    with running_pg.hung():
        started = time.monotonic()
        result = await run_check(probe.check, 0.5, redact)
        elapsed = time.monotonic() - started
        assert result.status is Status.FAIL
        assert "timed out" in result.message
        assert elapsed < 1.0
        # A new connection attempt against the frozen server is bounded too.
        started = time.monotonic()
        again = await run_check(probe.check, 0.5, redact)
        assert again.status is Status.FAIL and time.monotonic() - started < 1.0
        await asyncio.sleep(0.05)
        # asyncpg's CancelRequest task is cancelled by terminate(): no task outlives the run.
        assert other_tasks() - before == set()
        close_started = time.monotonic()
        await probe.close()
        assert time.monotonic() - close_started < 2.0
    probe2 = make_probe(running_pg.dsn)
    try:
        assert (await run_check(probe2.check, 2.0, redact)).status is Status.PASS
    finally:
        await probe2.close()


async def test_wrong_password_fails_without_leaking_it(running_pg):
    wrong = "Wr0ng-pa55word-xyz"
    dsn = running_pg.dsn.replace(running_pg.password, wrong)
    probe = make_probe(dsn)
    try:
        result = await run_check(probe.check, 2.0, Redactor([wrong]))
        assert result.status is Status.FAIL
        assert "password authentication failed" in result.message
        assert wrong not in result.message
    finally:
        await probe.close()


async def test_nothing_listening_fails_fast(running_pg):
    from tests.support.net import free_port

    probe = make_probe(f"postgresql://agent:pw@127.0.0.1:{free_port()}/agentdb")
    result = await run_check(probe.check, 1.0, Redactor([]))
    assert result.status is Status.FAIL
    assert result.latency_s < 0.5
    await probe.close()
