"""``/status``: one HTML document for a person, and the files it loads.

The script and stylesheet are separate same-origin files (``/status/app.js``, ``/status/app.css``,
``/status/favicon.svg``) rather than inline with a nonce: ``'self'`` then covers them, nothing is
rendered per response, and no CDN, font or external script is involved, so the page works in a
cluster without internet. The document carries its own Content-Security-Policy, stricter than the
agent's default (``default-src 'none'`` plus exactly what the page uses) but without
``upgrade-insecure-requests``: the admin listener speaks plain HTTP, and a browser that opened
``http://10.1.2.3:9464/status`` would otherwise rewrite even same-origin requests to https and
load nothing. (Loopback, the ``kubectl port-forward`` case, is exempt in browsers either way.)
The security-headers hook adds the other default headers with ``setdefault``.

Assets are Python strings, not package data, so a plain ``pip install .`` always ships them.
"""

from __future__ import annotations

import html
from string import Template
from typing import TYPE_CHECKING

from agent.admin.auth import AdminAuth, unauthorized
from agent.admin.http import Request, Response
from agent.admin.status.script import SCRIPT
from agent.admin.status.style import STYLE

if TYPE_CHECKING:
    from agent.admin.app import AdminApp

STATUS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
NO_STORE = {"Cache-Control": "no-store"}

_FAVICON_COLOURS = {"pass": "#1a7f37", "warn": "#bf8700", "fail": "#cf222e"}
_FAVICON = Template(
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="$colour"/></svg>'
)

_DOCUMENT = Template("""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>sidecar-agent status</title>
<link rel="icon" id="favicon" href="status/favicon.svg">
<link rel="stylesheet" href="status/app.css">
<script src="status/app.js" defer></script>
</head>
<body data-health="$health">
<header>
  <h1>sidecar-agent <span class="version" id="version">v$version</span></h1>
  <noscript><p>This page needs JavaScript; the same data is at <a href="$health/history">$health_text/history</a>.</p></noscript>
  <div class="tiles">
    <div class="tile" id="overall"><span class="label">Overall</span><span class="value">…</span></div>
    <div class="tile" id="ready"><span class="label">Readiness</span><span class="value">…</span></div>
    <div class="tile" id="started"><span class="label">Startup</span><span class="value">…</span></div>
    <div class="tile" id="uptime"><span class="label">Uptime</span><span class="value">…</span></div>
    <div class="tile" id="tunnels"><span class="label">Open tunnels</span><span class="value">…</span></div>
  </div>
  <div class="banner draining" id="drain-banner" role="status" hidden></div>
  <div class="banner stale" id="stale-banner" role="alert" hidden></div>
</header>
<main>
  <h2>Checks</h2>
  <div class="panel">
    <table id="checks">
      <thead><tr>
        <th class="c-name">Check</th><th class="c-status">Status</th><th class="c-num">Latency</th>
        <th class="c-num">Since</th><th class="c-runs">Last runs (height: latency)</th><th>Message</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </div>
  <h2>Readiness control</h2>
  <div class="actions">
    <button type="button" id="drain" class="danger">Drain: readiness 503</button>
    <button type="button" id="undrain" disabled>Undrain</button>
    <span id="action-result" class="muted" role="status"></span>
  </div>
  <h2>Recent events</h2>
  <div class="panel"><ol class="events" id="events"><li class="empty">Loading…</li></ol></div>
</main>
<footer>
  <a href="$health">$health_text</a>
  <a href="$health/history">$health_text/history</a>
  <a href="$metrics">$metrics_text</a>
  <span id="updated">loading…</span>
</footer>
</body>
</html>
""")


def _relative(path: str) -> str:
    """``/health`` -> ``health``: resolved against ``.../status``, it keeps any path prefix in front."""
    return html.escape(path.lstrip("/"), quote=True)


def render_document(*, health_path: str, metrics_path: str, version: str) -> bytes:
    return _DOCUMENT.substitute(
        health=_relative(health_path),
        health_text=html.escape(health_path),
        metrics=_relative(metrics_path),
        metrics_text=html.escape(metrics_path),
        version=html.escape(version),
    ).encode()


def add_page_routes(app: AdminApp, auth: AdminAuth, *, health_path: str, metrics_path: str, version: str) -> None:
    """``GET /status`` (and ``?token=`` to log a browser in), its script, stylesheet and icon."""
    document = render_document(health_path=health_path, metrics_path=metrics_path, version=version)
    script = SCRIPT.encode()
    style = STYLE.encode()
    favicons = {status: _FAVICON.substitute(colour=colour).encode() for status, colour in _FAVICON_COLOURS.items()}
    favicons[""] = _FAVICON.substitute(colour="#8c959f").encode()

    async def page(request: Request) -> Response:
        given = request.query("token")
        if given is not None:
            if auth.is_enabled and not auth.token_matches(given):
                return unauthorized(request)
            # 303 to the bare page: the token leaves the address bar and the history.
            response = Response(303, headers={"Location": "status", **NO_STORE})
            if auth.is_enabled:
                auth.set_cookie(response)
            return response
        if not auth.allows(request):
            return unauthorized(request)
        headers = {"Content-Security-Policy": STATUS_CSP, **NO_STORE}
        return Response(200, document, content_type="text/html; charset=utf-8", headers=headers)

    async def app_js(request: Request) -> Response:
        return Response(200, script, content_type="text/javascript; charset=utf-8", headers=NO_STORE)

    async def app_css(request: Request) -> Response:
        return Response(200, style, content_type="text/css; charset=utf-8", headers=NO_STORE)

    async def favicon(request: Request) -> Response:
        body = favicons.get(request.query("s") or "", favicons[""])
        return Response(200, body, content_type="image/svg+xml", headers=NO_STORE)

    app.get("/status", page)
    app.get("/status/app.js", auth.require(app_js))
    app.get("/status/app.css", auth.require(app_css))
    app.get("/status/favicon.svg", auth.require(favicon))
