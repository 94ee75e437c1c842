"""GET/PUT /admin/log-level on the real admin app: change, revert by itself, who asked, the rules."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.admin.admin_apps import admin_app, make_config


@pytest.fixture(autouse=True)
def restore_agent_logger():  # type: ignore[no-untyped-def]
    yield
    logging.getLogger("agent").setLevel(logging.NOTSET)


async def test_change_shows_and_reverts_by_itself(admin_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent.admin")
    client = await admin_client(admin_app(make_config()))
    assert (await (await client.get("/admin/log-level")).json())["level"] in ("INFO", "WARNING")
    response = await client.put("/admin/log-level", json={"level": "debug", "duration_s": 0.3})
    assert response.status == 200
    state = await response.json()
    assert state["level"] == "DEBUG" and state["reverts_at"].endswith("Z")
    assert logging.getLogger("agent.proxy").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("asyncpg").isEnabledFor(logging.DEBUG)  # third parties keep their level
    changed = next(r for r in caplog.records if r.getMessage() == "log level changed")
    assert changed.to == "DEBUG" and changed.client_ip == "127.0.0.1"  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)
    state = await (await client.get("/admin/log-level")).json()
    assert state["level"] != "DEBUG" and state["reverts_at"] is None
    assert any(r.getMessage() == "log level reverted" for r in caplog.records)


@pytest.mark.parametrize(
    "body",
    [{"level": "LOUD"}, {"level": "DEBUG", "duration_s": 0}, {"level": "DEBUG", "duration_s": 1e9}, {"lvl": "DEBUG"}, ["DEBUG"]],
)
async def test_bad_changes_are_400_and_change_nothing(admin_client: Any, body: Any) -> None:
    client = await admin_client(admin_app(make_config()))
    before = (await (await client.get("/admin/log-level")).json())["level"]
    response = await client.put("/admin/log-level", json=body)
    assert response.status == 400 and (await response.json())["error_code"] == "BAD_REQUEST"
    assert (await (await client.get("/admin/log-level")).json())["level"] == before


async def test_with_a_token_both_need_it(admin_client: Any) -> None:
    client = await admin_client(admin_app(make_config(admin={"token": "s3cret-token"})))
    assert (await client.get("/admin/log-level")).status == 401
    assert (await client.put("/admin/log-level", json={"level": "DEBUG"})).status == 401
    bearer = {"Authorization": "Bearer s3cret-token"}
    assert (await client.put("/admin/log-level", json={"level": "DEBUG", "duration_s": 5}, headers=bearer)).status == 200
    assert (await (await client.get("/admin/log-level", headers=bearer)).json())["level"] == "DEBUG"
