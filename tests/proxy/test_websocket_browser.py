"""A WebSocket through the agent in a real headless Chromium.

The page (served by a small server of its own, so another origin than the agent) opens two
WebSockets through the in-process main listener to the real WebSocket app
(``tests/support/websocket_app.py``): the first echoes a text and a binary message and is closed
by the page with 4000, the second is closed by the app with 4001. What the page saw is read
back from ``window.result``; what the app saw from its sessions. Chromium offers
``permessage-deflate`` and the app accepts it, so compressed frames cross the tunnel too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.config import build_config
from tests.support.browser import CHROMIUM, Chromium
from tests.support.inprocess import InProcessAgent, in_process_agent
from tests.support.polling import async_wait_until
from tests.support.websocket_app import make_websocket_app, wait_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)"),
]

# The agent's ws:// URL comes in the query string.
PAGE = """<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,"><title>WebSocket through the agent</title>
<script>
const agent = new URLSearchParams(location.search).get("agent");

function open(path) {
  const ws = new WebSocket(agent + path);
  ws.binaryType = "arraybuffer";
  const closed = new Promise((resolve) => {
    ws.onclose = (e) => resolve({code: e.code, reason: e.reason, clean: e.wasClean});
  });
  const opened = new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error(`WebSocket ${path} failed`));
  });
  const next = () => new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); });
  return {ws, opened, closed, next};
}

async function run() {
  const result = {};
  const echo = open("/ws?id=browser-echo");
  await echo.opened;
  result.extensions = echo.ws.extensions;
  echo.ws.send("hello \\u2603");
  result.text = await echo.next();
  echo.ws.send(new Uint8Array([0, 1, 2, 127, 128, 255]));
  result.binary = Array.from(new Uint8Array(await echo.next()));
  echo.ws.close(4000, "page done");
  result.pageClose = await echo.closed;

  const closing = open("/ws?id=browser-closed&close=4001");
  await closing.opened;
  closing.ws.send("one");
  result.beforeAppClose = await closing.next();
  result.appClose = await closing.closed;
  return result;
}

run().then(
  (result) => { window.result = result; },
  (error) => { window.result = {error: `${error.name}: ${error.message}`}; },
);
</script>
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


@pytest.fixture
async def page_origin() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        _, port = runner.addresses[0][:2]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def app_server(aiohttp_server: Any) -> TestServer:
    return await aiohttp_server(make_websocket_app())


@pytest.fixture
async def agent(app_server: TestServer) -> AsyncIterator[InProcessAgent]:
    config = build_config(
        {
            "upstream": {"url": f"http://127.0.0.1:{app_server.port}"},
            "proxy": {"header_timeout_s": 0.5, "keepalive_timeout_s": 0.5},
            "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}},
        },
        {},
        "test",
    )
    async with in_process_agent(config) as running:
        yield running


async def test_chromium_talks_to_the_app_through_the_agent(
    agent: InProcessAgent, app_server: TestServer, page_origin: str, tmp_path: Any
) -> None:
    ws_url = agent.main_url.replace("http://", "ws://")
    async with Chromium(tmp_path / "chromium") as browser:
        tab = await browser.new_page()
        await tab.goto(f"{page_origin}/?agent={ws_url}")
        await tab.wait_for("window.result !== undefined", True, timeout=15)
        result = await tab.evaluate("window.result")
        problems = tab.problems()

    assert "error" not in result, "\n".join([str(result), *(text for _, text in problems)])
    assert result["text"] == "hello \u2603"
    assert result["binary"] == [0, 1, 2, 127, 128, 255]
    assert result["extensions"].startswith("permessage-deflate")  # negotiated end to end, through the agent
    assert result["pageClose"]["clean"] is True
    assert result["beforeAppClose"] == "one"
    assert result["appClose"] == {"code": 4001, "reason": "the app closes", "clean": True}
    assert [text for level, text in problems if level == "error"] == []

    echo = await wait_session(app_server.app, "browser-echo")
    assert echo.close_code == 4000 and echo.messages == 2
    assert echo.header("Origin") == [page_origin]
    assert echo.header("X-Forwarded-For") == ["127.0.0.1"]
    assert echo.header("Sec-WebSocket-Extensions") and echo.header("X-Request-ID")
    closed = await wait_session(app_server.app, "browser-closed")
    assert closed.close_code == 4001  # Chromium echoes the app's code, through the agent
    assert await async_wait_until(lambda: not agent.listener.ctx.tunnels)
    assert agent.http_metrics.tunnels_open == 0
    assert agent.http_metrics.upgrades[101] == 2
