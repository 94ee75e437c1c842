"""Who may use the admin listener's details, ``/status`` and ``/admin/*`` when ``admin.token`` is set.

Two ways in, both compared in constant time:

- ``Authorization: Bearer <token>`` (curl, scripts, Prometheus), on every method;
- the ``agent_admin`` cookie, for a browser, which cannot send a header when it opens a page.
  ``GET /status?token=<token>`` sets it (``HttpOnly; SameSite=Strict``, a session cookie) and
  redirects to ``status`` so the token leaves the address bar. The cookie holds an HMAC of the
  token, never the token itself. A ``POST`` authenticated by the cookie alone must also carry an
  ``Origin`` naming this very host: cookies are not scoped by port, so ``SameSite`` alone would
  let a page on another ``localhost`` port drain the agent (CSRF).

Token or not, a ``POST`` whose ``Origin`` names another origin is refused (403): browsers send
``Origin`` on every cross-origin ``POST``, so no web page can drain an agent reached through
``kubectl port-forward``; curl and scripts send none.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from agent.admin.errors import error_response

COOKIE_NAME = "agent_admin"
_COOKIE_CONTEXT = b"sidecar-agent admin cookie v1"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


class AdminAuth:
    """``allows(request)`` is always true when no token is configured."""

    def __init__(self, token: bytes) -> None:
        self._token = token
        self._cookie = hmac.new(token, _COOKIE_CONTEXT, hashlib.sha256).hexdigest().encode() if token else b""

    @property
    def is_enabled(self) -> bool:
        return bool(self._token)

    def allows(self, request: web.Request) -> bool:
        if not self._token or has_bearer_token(request, self._token):
            return True
        if not self._has_cookie(request):
            return False
        return request.method in _SAFE_METHODS or _is_same_origin(request)

    @staticmethod
    def is_cross_origin(request: web.Request) -> bool:
        """A state-changing request a browser sent from another origin."""
        return request.method not in _SAFE_METHODS and "Origin" in request.headers and not _is_same_origin(request)

    def token_matches(self, given: str) -> bool:
        return bool(self._token) and hmac.compare_digest(given.encode(), self._token)

    def set_cookie(self, response: web.StreamResponse) -> None:
        response.set_cookie(COOKIE_NAME, self._cookie.decode(), path="/", httponly=True, samesite="Strict")

    def require(self, handler: Handler) -> Handler:
        """``handler`` behind the token (401 JSON with ``WWW-Authenticate``) and refusing CSRF (403)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.is_cross_origin(request):
                return error_response(request, 403, "FORBIDDEN", "Cross-origin requests to the admin listener are refused.")
            if self.allows(request):
                return await handler(request)
            return unauthorized(request)

        return guarded

    def _has_cookie(self, request: web.Request) -> bool:
        given = request.cookies.get(COOKIE_NAME)
        return given is not None and hmac.compare_digest(given.encode(), self._cookie)


def has_bearer_token(request: web.Request, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


def unauthorized(request: web.Request) -> web.Response:
    return error_response(
        request,
        401,
        "UNAUTHORIZED",
        "A valid bearer token is required (browsers: open status?token=<token> once).",
        headers={"WWW-Authenticate": 'Bearer realm="sidecar-agent admin"'},
    )


def _is_same_origin(request: web.Request) -> bool:
    """The ``Origin`` header names the host the request was sent to (any scheme: TLS may end in front)."""
    origin = request.headers.get("Origin", "")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.host.lower()
