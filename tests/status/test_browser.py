"""/status in a real headless Chromium while a real PostgreSQL goes down and comes back.

The agent runs as a subprocess with an admin token; the browser logs in with ``?token=`` (the
cookie path), watches the database row turn failing and recover from the rendered DOM, drains
and undrains with the page's buttons, and must report no console error, exception or CSP
violation. Screenshots of each state land in the test's tmp folder (``chromium/*.png``);
``docs/status-page.png`` is ``2-database-failing.png`` from a run of this test.
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import fast_checks
from tests.support.browser import CHROMIUM, Chromium
from tests.support.inprocess import ADMIN_TOKEN

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test.sh installs it)"),
]

ROW_STATUS = "document.querySelector('tr[data-check=\"{name}\"]')?.dataset.status ?? null"
EVENT = '!!document.querySelector(\'#events li[data-check="{name}"][data-to="{to}"]\')'
OVERFLOW_PX = "document.documentElement.scrollWidth - window.innerWidth"
UNKNOWN_FEATURE = "Error with Permissions-Policy header: Unrecognized feature"


async def test_status_page_follows_a_database_outage(agent_factory, running_pg, healthy_upstream, tmp_path):
    config = fast_checks(healthy_upstream.url, running_pg.dsn)
    config["admin"] = {"token": ADMIN_TOKEN}
    config["server"] = {"drain_delay_s": 3.0, "shutdown_timeout_s": 2.0}  # long enough to see the drain
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=15)
    shots = tmp_path / "chromium"

    async with Chromium(shots) as browser:
        page = await browser.new_page(width=1200, height=800)
        await page.goto(f"{agent.admin_url}/status?token={ADMIN_TOKEN}")
        await page.wait_for("location.search", "", timeout=10)  # the 303 dropped the token from the URL
        await page.wait_for(ROW_STATUS.format(name="database"), "pass", timeout=15)
        await page.wait_for(ROW_STATUS.format(name="upstream"), "pass", timeout=5)
        assert await page.evaluate("document.querySelector('#overall').dataset.status") == "pass"
        assert await page.evaluate("document.querySelectorAll('tr[data-check=\"database\"] svg.runs rect.run').length") > 0
        await page.screenshot(shots / "1-healthy.png")

        # Drain and undrain with the page's buttons (cookie + same-origin POST).
        await page.evaluate("document.getElementById('drain').click()")
        agent.wait_for("/health/ready", 503, timeout=5)
        await page.wait_for("document.getElementById('drain-banner').hidden", False, timeout=5)
        await page.wait_for("!!document.querySelector('#events li[data-kind=\"drain\"]')", True, timeout=5)
        await page.evaluate("document.getElementById('undrain').click()")
        agent.wait_for("/health/ready", 200, timeout=5)
        await page.wait_for("document.getElementById('drain-banner').hidden", True, timeout=5)

        running_pg.stop()
        try:
            await page.wait_for(ROW_STATUS.format(name="database"), "fail", timeout=15)
            await page.wait_for(EVENT.format(name="database", to="fail"), True, timeout=5)
            assert await page.evaluate("document.querySelector('#overall').dataset.status") == "fail"
            assert await page.evaluate("document.querySelector('#ready .value').textContent") == "not ready"
            message = await page.evaluate("document.querySelector('tr[data-check=\"database\"] td.message').textContent")
            assert message and running_pg.password not in message
            assert await page.evaluate("document.title") == "FAIL · not ready · sidecar-agent"
            await page.screenshot(shots / "2-database-failing.png")
        finally:
            running_pg.restart()

        await page.wait_for(ROW_STATUS.format(name="database"), "pass", timeout=20)
        await page.wait_for(EVENT.format(name="database", to="pass"), True, timeout=5)
        assert await page.evaluate("document.querySelector('#overall').dataset.status") == "pass"
        fails = "document.querySelectorAll('tr[data-check=\"database\"] svg.runs rect.run-fail').length"
        assert await page.evaluate(fails) > 0, "the outage stays visible in the timeline"
        await page.screenshot(shots / "3-recovered.png")

        # A phone in dark mode: one column, nothing wider than the screen.
        await page.resize(390, 844, dark=True, mobile=True)
        await page.wait_for("matchMedia('(prefers-color-scheme: dark)').matches", True, timeout=5)
        await page.wait_for(OVERFLOW_PX, 0, timeout=5)
        assert await page.evaluate("getComputedStyle(document.querySelector('thead')).display") == "none"
        await page.screenshot(shots / "4-narrow-dark.png")

        assert await page.evaluate("window.__cspViolations") == []
        problems = page.problems()
        assert [text for level, text in problems if level == "error"] == []
        # The agent's default Permissions-Policy (OWASP's list) names features this Chromium does
        # not know (web-share outside Windows/ChromeOS); the browser warns and ignores them.
        assert [text for level, text in problems if level == "warning" and UNKNOWN_FEATURE not in text] == []

        # SIGTERM: the page shows a shutdown drain it cannot undo, then that the agent is gone.
        await page.resize(1200, 800)
        agent.send_signal(signal.SIGTERM)
        banner = "document.getElementById('drain-banner').textContent.startsWith('Shutting down (signal SIGTERM)')"
        await page.wait_for(banner, True, timeout=5)
        assert await page.evaluate("document.getElementById('undrain').disabled") is True
        await page.screenshot(shots / "5-shutting-down.png")
        await page.wait_for("document.getElementById('stale-banner').hidden", False, timeout=10)
        assert await page.evaluate("document.body.classList.contains('is-stale')") is True
        await page.screenshot(shots / "6-agent-gone.png")
    assert agent.wait(5) == 0
    assert all((shots / name).stat().st_size > 10_000 for name in ("1-healthy.png", "2-database-failing.png"))


async def test_status_page_says_why_a_drain_is_refused(agent_factory, healthy_upstream, tmp_path):
    """A 401 on the Drain button (here: the login cookie is gone) is shown next to it, in words."""
    config = fast_checks(healthy_upstream.url)
    config["admin"] = {"token": ADMIN_TOKEN}
    agent = agent_factory(config)
    agent.wait_for("/health/ready", 200, timeout=15)
    async with Chromium(tmp_path / "chromium") as browser:
        page = await browser.new_page(width=1200, height=800)
        await page.goto(f"{agent.admin_url}/status?token={ADMIN_TOKEN}")
        await page.wait_for("document.getElementById('ready')?.dataset.status ?? null", "pass", timeout=10)
        await page.send("Network.clearBrowserCookies")
        await page.evaluate("document.getElementById('drain').click()")
        await page.wait_for("document.getElementById('action-result').dataset.outcome", "unauthorized", timeout=5)
        text = await page.evaluate("document.getElementById('action-result').textContent")
        assert text.startswith("Drain not allowed from here (401): ") and "token" in text, text
        color = "getComputedStyle(document.getElementById('action-result')).color"
        assert await page.evaluate(color) != await page.evaluate("getComputedStyle(document.body).color")
    assert agent.get("/health/ready").status == 200
