"""The admin listener's /status page, its assets and /health/history, in-process; the admin token."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from agent.admin.status.page import STATUS_CSP
from agent.app import create_monitor
from agent.checks.base import failed
from agent.config import ConfigError
from tests.support.inprocess import ADMIN_TOKEN, scripted_config
from tests.support.polling import async_wait_until

BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Document(HTMLParser):
    """Collects what matters for the CSP: scripts, styles, inline handlers, every URL."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_script = ""
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline_script += data.strip()


async def test_history_serves_runs_transitions_and_current_state(make_agent, results):
    agent = await make_agent()
    results["database"] = failed("connection refused")
    assert await async_wait_until(lambda: agent.monitor.snapshot.check("database").status == "fail")
    response = await agent.admin.get("/health/history")
    assert response.status == 200  # always 200: the page reads it while checks fail
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["history_size"] == 30
    assert set(body["checks"]) == {"database", "cache"}
    runs = body["checks"]["database"]["runs"]
    assert 1 <= len(runs) <= 30 and runs[-1]["status"] == "fail" and runs[-1]["message"] == "connection refused"
    assert runs[0]["status"] == "pass" and isinstance(runs[0]["latency_ms"], float)
    assert {"check": "database", "from": "pass", "to": "fail", "first_run": False}.items() <= body["transitions"][-1].items()
    assert body["current"]["status"] == "fail" and body["current"]["checks"]["database"]["critical"] is True
    assert body["readiness"] == {"ready": False, "started": True, "draining": False, "drain_reason": None, "tunnels_open": 0}
    # Messages were redacted by run_check before they reached the history.
    assert "hunter2" not in await response.text()
    assert (await agent.admin.head("/health/history")).status == 200


async def test_history_is_bounded_by_config(make_agent):
    agent = await make_agent(health={"history_size": 3, "interval_s": 0.01})
    assert await async_wait_until(lambda: agent.monitor.snapshot.check("database").runs > 10)
    body = await (await agent.admin.get("/health/history")).json()
    assert len(body["checks"]["database"]["runs"]) == 3


def test_history_size_config():
    assert create_monitor(scripted_config(health={"history_size": 7})).history.size == 7
    with pytest.raises(ConfigError, match=r"health\.history_size: must be > 0"):
        scripted_config(health={"history_size": 0})


async def test_status_page_is_self_contained_under_its_csp(make_agent):
    agent = await make_agent()
    response = await agent.admin.get("/status")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == STATUS_CSP
    assert "upgrade-insecure-requests" not in STATUS_CSP and "unsafe-inline" not in STATUS_CSP
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    document = Document()
    document.feed(await response.text())
    assert document.inline_script == ""
    urls = []
    for tag, attrs in document.tags:
        assert tag != "style" and "style" not in attrs, "inline styles need 'unsafe-inline'"
        assert not any(name.startswith("on") for name in attrs), "inline handlers need 'unsafe-inline'"
        urls += [attrs[key] for key in ("src", "href") if attrs.get(key)]
    # Relative, same-origin URLs only: no CDN, and the page keeps working under a path prefix.
    assert urls and all(not url.startswith(("/", "http:", "https:", "data:")) for url in urls), urls
    assert {"status/app.js", "status/app.css", "health", "health/history", "metrics"} <= set(urls)
    for path, content_type in (
        ("/status/app.js", "text/javascript"),
        ("/status/app.css", "text/css"),
        ("/status/favicon.svg?s=fail", "image/svg+xml"),
    ):
        asset = await agent.admin.get(path)
        assert asset.status == 200 and asset.headers["Content-Type"].startswith(content_type), path
        assert "//" not in (await asset.text()).replace("http://www.w3.org/", ""), f"{path} must not fetch elsewhere"


async def test_main_listener_has_no_status_page(make_agent):
    agent = await make_agent()
    for path in ("/status", "/health/history"):
        async with agent.main.get(path) as response:
            assert response.headers.get("Content-Security-Policy") != STATUS_CSP


async def test_token_gates_page_history_and_admin_not_probes_or_metrics(make_agent):
    agent = await make_agent(admin={"token": ADMIN_TOKEN})
    admin = agent.admin
    for method, path in (
        ("GET", "/status"),
        ("GET", "/status/app.js"),
        ("GET", "/status/app.css"),
        ("GET", "/health/history"),
        ("POST", "/admin/drain"),
        ("POST", "/admin/undrain"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
            response = await admin.request(method, path, headers=headers)
            assert response.status == 401, (method, path, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await response.json())["error_code"] == "UNAUTHORIZED"
        assert (await admin.request(method, path, headers=BEARER)).status == 200, path
    assert agent.monitor.draining is False  # drain then undrain, both with the bearer token
    for path in ("/health/live", "/health/ready", "/health/startup", "/metrics"):
        assert (await admin.get(path)).status == 200, path
    assert (await agent.main.get("/health/ready")).status == 200


async def test_browser_login_sets_a_strict_cookie_that_is_not_the_token(make_agent):
    agent = await make_agent(admin={"token": ADMIN_TOKEN})
    admin = agent.admin
    assert (await admin.get("/status", params={"token": "wrong"}, allow_redirects=False)).status == 401
    login = await admin.get("/status", params={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert login.status == 303 and login.headers["Location"] == "status"
    set_cookie = login.headers["Set-Cookie"]
    assert set_cookie.startswith("agent_admin=") and "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    value = login.cookies["agent_admin"].value
    admin.session.cookie_jar.clear()  # each request below says which cookie it sends
    assert ADMIN_TOKEN not in set_cookie and len(value) == 64
    cookie = {"Cookie": f"agent_admin={value}"}
    assert (await admin.get("/status", headers=cookie)).status == 200
    assert (await admin.get("/status/app.js", headers=cookie)).status == 200
    assert (await admin.get("/health/history", headers=cookie)).status == 200
    details = await (await admin.get("/health", headers=cookie)).json()
    assert details["checks"]["cache"]["message"], "the cookie gives full details on /health too"
    assert (await admin.get("/status", headers={"Cookie": "agent_admin=" + "0" * 64})).status == 401
    assert (await admin.get("/status", headers={"Cookie": f"agent_admin={ADMIN_TOKEN}"})).status == 401


async def test_cookie_posts_need_a_same_origin_origin(make_agent):
    """Cookies are not scoped by port: a page on another localhost port must not drain the agent."""
    agent = await make_agent(admin={"token": ADMIN_TOKEN})
    admin = agent.admin
    login = await admin.get("/status", params={"token": ADMIN_TOKEN}, allow_redirects=False)
    cookie = f"agent_admin={login.cookies['agent_admin'].value}"
    admin.session.cookie_jar.clear()
    own = str(admin.make_url("")).rstrip("/")
    for origin, status in ((None, 401), ("null", 403), ("http://127.0.0.1:1", 403), ("http://evil.example", 403)):
        headers = {"Cookie": cookie} | ({"Origin": origin} if origin else {})
        assert (await admin.post("/admin/drain", headers=headers)).status == status, origin
        # Even the bearer token does not make a cross-origin browser POST acceptable.
        assert (await admin.post("/admin/drain", headers=headers | BEARER)).status == (200 if origin is None else 403)
        await admin.post("/admin/undrain", headers=BEARER)
    assert agent.monitor.draining is False
    response = await admin.post("/admin/drain", headers={"Cookie": cookie, "Origin": own})
    assert response.status == 200 and agent.monitor.draining is True


async def test_without_a_token_everything_is_open_but_not_to_other_origins(make_agent):
    agent = await make_agent()
    redirect = await agent.admin.get("/status", params={"token": "anything"}, allow_redirects=False)
    assert redirect.status == 303 and "Set-Cookie" not in redirect.headers
    assert (await agent.admin.get("/status")).status == 200
    # Any web page the on-call engineer has open could POST to a port-forwarded localhost:9464.
    refused = await agent.admin.post("/admin/drain", headers={"Origin": "https://evil.example"})
    assert refused.status == 403 and (await refused.json())["error_code"] == "FORBIDDEN"
    assert agent.monitor.draining is False
    own = str(agent.admin.make_url("")).rstrip("/")
    assert (await agent.admin.post("/admin/drain", headers={"Origin": own})).status == 200
    assert (await agent.admin.post("/admin/undrain")).status == 200  # curl sends no Origin
