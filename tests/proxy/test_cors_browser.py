"""CORS through the agent in a real headless Chromium: a credentialed fetch that needs a preflight.

The other CORS tests read the agent's headers; only a browser applies the Fetch Standard's CORS
check to them (§3.2.5: an echoed origin, ``Access-Control-Allow-Credentials`` exactly ``true``,
only exposed headers readable). A page on one loopback port fetches the agent on another:
``PUT /echo`` with ``credentials: "include"``, a custom header and a JSON body, so the browser
sends a preflight first. The same page served from an origin the agent does not allow is the
control that shows the browser does block: a test that cannot fail proves nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.conftest import fast_checks
from tests.support.browser import CHROMIUM, Chromium
from tests.support.reports import wait_for_log

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)"),
]

# The agent's URL comes in the query string, so the page can be served before the agent starts.
# The cookie is set on 127.0.0.1 by the page's origin: cookies ignore the port, so the agent's
# origin is same-site and the cookie travels only because the fetch includes credentials.
PAGE = """<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,"><title>CORS through the agent</title>
<script>
const agent = new URLSearchParams(location.search).get("agent");
document.cookie = "session=from-page; Path=/; SameSite=Lax";
fetch(agent + "/echo", {
  method: "PUT",
  credentials: "include",
  headers: {"X-Custom": "1", "Content-Type": "application/json"},
  body: "{}",
}).then(
  async (response) => {
    window.result = {
      status: response.status,
      requestId: response.headers.get("X-Request-ID"),
      unexposed: response.headers.get("X-Content-Type-Options"),
      body: await response.json(),
    };
  },
  (error) => { window.result = {error: `${error.name}: ${error.message}`}; },
);
</script>
"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


@pytest.fixture
async def origins() -> AsyncIterator[tuple[str, str]]:
    """``(allowed, other)``: the page served on two loopback ports, that is two origins."""
    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        for _ in range(2):
            await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield tuple(f"http://127.0.0.1:{port}" for _, port in runner.addresses)
    finally:
        await runner.cleanup()


def cors_agent(agent_factory, upstream, allowed_origin: str):
    config = fast_checks(upstream.url)
    config["cors"] = {
        "allowed_origins": [allowed_origin],
        "allow_credentials": True,
        "allowed_methods": ["GET", "PUT"],
        "allowed_headers": ["Content-Type", "X-Custom"],
        "expose_headers": ["X-Request-ID"],
    }
    return agent_factory(config)


async def fetch_from(origin: str, agent, workdir):
    """Open the page at ``origin``; its fetch's outcome and every problem Chromium reported."""
    async with Chromium(workdir) as browser:
        tab = await browser.new_page()
        await tab.goto(f"{origin}/?agent={agent.url}")
        await tab.wait_for("window.result !== undefined", True, timeout=10)
        return await tab.evaluate("window.result"), tab.problems()


def access_lines(agent, path: str) -> list[tuple[str, int]]:
    return [
        (r["method"], r["status"])
        for r in agent.log_records()
        if r.get("message") == "request completed" and r.get("path") == path
    ]


async def test_credentialed_preflighted_fetch_works_in_chromium(agent_factory, healthy_upstream, origins, tmp_path):
    allowed, _ = origins
    agent = cors_agent(agent_factory, healthy_upstream, allowed)

    result, problems = await fetch_from(allowed, agent, tmp_path / "chromium")

    assert "error" not in result, "\n".join([str(result), *(text for _, text in problems)])
    assert result["status"] == 200
    body = result["body"]
    assert (body["method"], body["path"], body["body_len"]) == ("PUT", "/echo", 2)
    seen = {name.lower(): value for name, value in body["headers"]}
    assert seen["x-custom"] == "1"
    assert seen["origin"] == allowed
    assert "session=from-page" in seen["cookie"]  # credentials were included
    assert result["requestId"] and result["requestId"] == seen["x-request-id"]  # exposed, and the one the app saw
    assert result["unexposed"] is None  # a CORS response: what is not exposed stays hidden
    assert [text for _, text in problems if "CORS" in text or "Access-Control" in text] == []
    assert [text for level, text in problems if level == "error"] == []
    wait_for_log(agent, lambda r: r.get("method") == "PUT" and r.get("path") == "/echo")
    assert access_lines(agent, "/echo") == [("OPTIONS", 204), ("PUT", 200)]  # the agent answered the preflight

    # What Chromium checked, read off the wire: each CORS header once, on both answers.
    preflight = agent.get(
        "/echo",
        method="OPTIONS",
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,x-custom",
        },
    )
    actual = agent.get("/echo", method="PUT", headers={"Origin": allowed})
    assert (preflight.status, actual.status) == (204, 200)
    for response in (preflight, actual):
        assert response.headers.get_all("Access-Control-Allow-Credentials") == ["true"]
        assert response.headers.get_all("Access-Control-Allow-Origin") == [allowed]


async def test_origin_not_allowed_is_blocked_by_chromium(agent_factory, healthy_upstream, origins, tmp_path):
    allowed, other = origins
    agent = cors_agent(agent_factory, healthy_upstream, allowed)

    result, problems = await fetch_from(other, agent, tmp_path / "chromium")

    assert result == {"error": "TypeError: Failed to fetch"}
    blocked = [text for level, text in problems if level == "error" and "blocked by CORS policy" in text]
    assert blocked and f"from origin '{other}'" in blocked[0], problems
    wait_for_log(agent, lambda r: r.get("method") == "OPTIONS" and r.get("path") == "/echo")
    assert access_lines(agent, "/echo") == [("OPTIONS", 204)]  # the PUT never left the browser
