"""Security headers on every response the agent sends, set-if-absent, fingerprints removed.

Applied in ``on_response_prepare`` (after aiohttp adds ``Server``, before headers are written),
so it reaches streamed responses and raised HTTP errors too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.config import SecurityHeadersConfig

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def make_security_headers_hook(
    config: SecurityHeadersConfig, *, is_https: Callable[[web.Request], bool] | None = None
) -> ResponseHook:
    headers = tuple(config.headers)
    remove = frozenset(name.lower() for name in config.remove)
    override = config.override
    hsts_value = config.hsts_value

    async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
        out = response.headers
        # A response has a handful of headers and the removal list dozens: walk the former.
        for name in [name for name in out if name.lower() in remove]:
            out.popall(name, None)
        if override:
            out.update(headers)
        else:
            for name, value in headers:
                out.setdefault(name, value)
        if config.hsts == "always" or (config.hsts == "https" and is_https is not None and is_https(request)):
            if override:
                out["Strict-Transport-Security"] = hsts_value
            else:
                out.setdefault("Strict-Transport-Security", hsts_value)

    return add_security_headers
