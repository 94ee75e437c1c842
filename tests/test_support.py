"""Self-checks for the test-support helpers (real PostgreSQL, real HTTP)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from tests.support.net import free_port
from tests.support.postgres import PostgresServer
from tests.support.upstream import make_upstream_app, start_upstream_process


async def _select_one(dsn: str, timeout: float = 5) -> Any:
    conn = await asyncpg.connect(dsn, timeout=timeout)
    try:
        return await conn.fetchval("SELECT 1 AS support_selfcheck")
    finally:
        await conn.close()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536


def test_postgres_lifecycle(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as pg:
        assert pg.dsn == f"postgresql://agent:{pg.password}@127.0.0.1:{pg.port}/agentdb"
        offset = pg.statement_log_size()
        assert asyncio.run(_select_one(pg.dsn)) == 1
        assert pg.count_statements("support_selfcheck") == 1
        assert pg.count_statements("support_selfcheck", since=offset) == 1
        assert pg.count_statements("support_selfcheck", "postgres") == 0
        assert pg.password not in pg.log_path.read_text()

        with pg.hung():
            with pytest.raises(TimeoutError):
                asyncio.run(_select_one(pg.dsn, timeout=1))
        pg.resume()  # safe when not hung
        assert asyncio.run(_select_one(pg.dsn)) == 1

        port = pg.port
        pg.stop()
        assert not pg.is_running()
        with pytest.raises(OSError):
            asyncio.run(_select_one(pg.dsn, timeout=2))

        pg.restart()
        assert pg.port == port
        assert asyncio.run(_select_one(pg.dsn)) == 1
        after_restart = pg.statement_log_size()
        assert pg.count_statements("support_selfcheck", since=after_restart) == 0
        assert pg.psql("SELECT current_database()", database="agentdb").strip() == "agentdb"
    assert not pg.is_running()


def test_postgres_close_while_hung(tmp_path: Path) -> None:
    pg = PostgresServer(tmp_path / "pg", password="s3cret-'quoted")
    pg.start()
    pg.hang()
    pg.close()
    assert not pg.is_running()
    pg.close()  # idempotent


def test_upstream_subprocess() -> None:
    with start_upstream_process() as up:
        assert _get(up.url + "/health") == (200, {"status": "ok"})
        assert up.set_mode("failing") == {"mode": "failing", "delay_s": 5.0}
        assert _get(up.url + "/health") == (500, {"status": "broken"})
        assert up.requests_served() == 2
        up.stop()
        assert not up.is_running()


def test_upstream_in_process_routes() -> None:
    async def scenario() -> None:
        async with TestServer(make_upstream_app()) as server:
            async with aiohttp.ClientSession() as http:
                base = str(server.make_url(""))
                async with http.post(
                    base + "/echo/a/b?x=1",
                    data=b"12345",
                    headers=[("X-Dup", "1"), ("X-Dup", "2")],
                ) as resp:
                    body = await resp.json()
                assert body["method"] == "POST"
                assert body["path"] == "/echo/a/b?x=1"
                assert body["body_len"] == 5
                assert [v for k, v in body["headers"] if k == "X-Dup"] == ["1", "2"]

                async with http.get(base + "/bytes/200000") as resp:
                    assert resp.content_length == 200000
                    assert await resp.read() == b"x" * 200000
                async with http.get(base + "/status/204") as resp:
                    assert resp.status == 204
                async with http.get(base + "/status/418") as resp:
                    assert (resp.status, await resp.json()) == (418, {"code": 418})

                async with http.get(base + "/api/v1/plans/nope") as resp:
                    assert (resp.status, await resp.json()) == (404, {"detail": "Plan not found"})
                async with http.post(base + "/api/v1/plans", data=b"") as resp:
                    assert resp.status == 422
                    assert (await resp.json())["detail"][0]["loc"] == ["body", "name"]
                async with http.post(base + "/api/v1/plans", json={"name": "p"}) as resp:
                    assert resp.status == 201
                    plan = await resp.json()
                async with http.get(base + "/api/v1/plans") as resp:
                    assert await resp.json() == [plan]

                async with http.post(base + "/_control", json={"mode": "slow", "delay_s": 0.2}):
                    pass
                async with http.get(base + "/health") as resp:
                    assert resp.status == 200
                async with http.get(base + "/slow?delay_s=0.1") as resp:
                    assert await resp.json() == {"slept": 0.1}

    asyncio.run(scenario())
