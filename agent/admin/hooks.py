"""``on_response_prepare`` hooks of the admin listener: the request id and the security headers.

They run after aiohttp adds ``Server`` and before the head is written, so they reach every
response the admin listener sends: handlers', streamed ones, and the JSON errors of
``agent.admin.errors``. Both are adapters: the id comes from the request context middleware, the
headers from :class:`agent.rules.security_headers.SecurityHeaders`, applied to
``response.headers`` exactly as the main listener applies it to bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.admin.context import request_id_of
from agent.config import SecurityHeadersConfig
from agent.rules.security_headers import SecurityHeaders

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def make_request_id_hook(header: str) -> ResponseHook:
    """The request's id on the response, as the one value of ``header``."""

    async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
        request_id = request_id_of(request)
        if request_id is not None:
            response.headers[header] = request_id

    return add_request_id


def security_headers_rule(config: SecurityHeadersConfig) -> SecurityHeaders:
    return SecurityHeaders.from_config(config)


def make_security_headers_hook(rule: SecurityHeaders) -> ResponseHook:
    """Fingerprints dropped; each header added unless present, or (``override``) replacing its one value.

    HTTPS is the connection's own (``request.secure``): the admin listener trusts no
    ``X-Forwarded-Proto``.
    """

    async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        https = request.secure
        dropped = rule.dropped(https)
        # A response has a handful of headers and the dropped set dozens: walk the former.
        for name in {name for name in headers if name.lower() in dropped}:
            headers.popall(name, None)
        present = frozenset(name.lower() for name in headers) & rule.watched
        for name, value in rule.added(present, https):
            headers.add(name, value)

    return add_security_headers
