"""Who may use the admin listener: reads behind ``admin.token`` when it is set, changes closed by default.

The rule is one pure function, :func:`admin_access`; :class:`AdminAuth` applies it to a request,
as :meth:`AdminAuth.require` for a route and :meth:`AdminAuth.refusal`, which
:class:`agent.admin.app.AdminApp` asks for every change.

- **Changes** (every method but ``GET`` and ``HEAD``: drain, undrain, any route added later) are
  closed by default (SPEC §10). With ``admin.token`` set they need the token from every peer,
  loopback included; without one only a loopback peer (``127.0.0.0/8``, ``::1``,
  ``::ffff:127.x``) may make them, so ``kubectl exec ... sidecar-agent drain`` and
  ``kubectl port-forward`` (which connects to ``localhost`` inside the pod) keep working while
  anything else that reaches the pod gets 401. The peer is the socket's, never a header.
- **Reads** (details, ``/status``, ``/health/history``) need the token when it is set, else are open.
  ``/metrics`` and the probes never go through here.

Two ways to give the token, both compared in constant time:

- ``Authorization: Bearer <token>`` (curl, scripts, Prometheus), on every method;
- the ``agent_admin`` cookie, for a browser, which cannot send a header when it opens a page.
  ``GET /status?token=<token>`` sets it (``HttpOnly; SameSite=Strict``, a session cookie) and
  redirects to ``status`` so the token leaves the address bar. The cookie holds an HMAC of the
  token, never the token itself. A change authenticated by the cookie alone must also carry an
  ``Origin`` naming this very host: cookies are not scoped by port, so ``SameSite`` alone would
  let a page on another ``localhost`` port drain the agent (CSRF).

Token or not, a change whose ``Origin`` names another origin is refused (403): browsers send
``Origin`` on every cross-origin ``POST``, so no web page can drain an agent reached through
``kubectl port-forward`` (a loopback peer); curl and scripts send none.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from agent.admin.errors import error_response
from agent.admin.http import Handler, Request, Response

COOKIE_NAME = "agent_admin"
_COOKIE_CONTEXT = b"sidecar-agent admin cookie v1"
SAFE_METHODS = frozenset({"GET", "HEAD"})

TOKEN_REQUIRED = "A valid bearer token is required (browsers: open status?token=<token> once)."
LOOPBACK_ONLY = (
    "Without admin.token, admin changes are accepted only from loopback: "
    "run 'sidecar-agent drain' or 'undrain' inside the pod, or set admin.token and send it."
)


class Access(enum.StrEnum):
    ALLOWED = "allowed"
    UNAUTHORIZED = "unauthorized"  # 401
    CROSS_ORIGIN = "cross_origin"  # 403


def is_loopback(host: str | None) -> bool:
    """``127.0.0.0/8``, ``::1`` and IPv4-mapped ``::ffff:127.x``; anything else (a name, None) is not."""
    try:
        address = ipaddress.ip_address((host or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def admin_access(
    *, is_change: bool, peer: str | None, is_token_set: bool, has_credentials: bool, is_cross_origin: bool
) -> Access:
    """The whole rule: a token, when set, is needed from everyone; without one, changes only from loopback."""
    if is_change and is_cross_origin:
        return Access.CROSS_ORIGIN
    if is_token_set:
        return Access.ALLOWED if has_credentials else Access.UNAUTHORIZED
    if not is_change or is_loopback(peer):
        return Access.ALLOWED
    return Access.UNAUTHORIZED


class AdminAuth:
    """``allows(request)`` (reads: full details) is always true when no token is configured."""

    def __init__(self, token: bytes) -> None:
        self._token = token
        self._cookie = hmac.new(token, _COOKIE_CONTEXT, hashlib.sha256).hexdigest().encode() if token else b""

    @property
    def is_enabled(self) -> bool:
        return bool(self._token)

    def allows(self, request: Request) -> bool:
        return not self._token or self._has_credentials(request)

    @staticmethod
    def is_cross_origin(request: Request) -> bool:
        """A state-changing request a browser sent from another origin."""
        return request.method not in SAFE_METHODS and "Origin" in request.headers and not _is_same_origin(request)

    def token_matches(self, given: str) -> bool:
        return bool(self._token) and hmac.compare_digest(given.encode(), self._token)

    def set_cookie(self, response: Response) -> None:
        response.set_cookie(COOKIE_NAME, self._cookie.decode(), path="/", http_only=True, same_site="Strict")

    def refusal(self, request: Request) -> Response | None:
        """The 401 or 403 :func:`admin_access` decides for ``request``, or None when it may go on."""
        access = admin_access(
            is_change=request.method not in SAFE_METHODS,
            peer=request.peer,  # the socket's, never a header's word
            is_token_set=self.is_enabled,
            has_credentials=self.is_enabled and self._has_credentials(request),
            is_cross_origin=self.is_cross_origin(request),
        )
        if access is Access.CROSS_ORIGIN:
            return error_response(request, 403, "FORBIDDEN", "Cross-origin requests to the admin listener are refused.")
        if access is Access.UNAUTHORIZED:
            return unauthorized(request, TOKEN_REQUIRED if self.is_enabled else LOOPBACK_ONLY)
        return None

    def require(self, handler: Handler) -> Handler:
        """``handler`` behind :meth:`refusal`: the token when set (401 JSON with ``WWW-Authenticate``), no CSRF (403)."""

        async def guarded(request: Request) -> Response:
            refused = self.refusal(request)
            return refused if refused is not None else await handler(request)

        return guarded

    def _has_credentials(self, request: Request) -> bool:
        if has_bearer_token(request, self._token):
            return True
        if not self._has_cookie(request):
            return False
        return request.method in SAFE_METHODS or _is_same_origin(request)

    def _has_cookie(self, request: Request) -> bool:
        given = request.cookie(COOKIE_NAME)
        return given is not None and hmac.compare_digest(given.encode(), self._cookie)


def has_bearer_token(request: Request, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


def unauthorized(request: Request, message: str = TOKEN_REQUIRED) -> Response:
    return error_response(
        request,
        401,
        "UNAUTHORIZED",
        message,
        headers={"WWW-Authenticate": 'Bearer realm="sidecar-agent admin"'},
    )


def _is_same_origin(request: Request) -> bool:
    """The ``Origin`` header names the host the request was sent to (any scheme: TLS may end in front)."""
    origin = request.headers.get("Origin") or ""
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.host.lower()
