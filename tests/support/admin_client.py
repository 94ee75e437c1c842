"""The real admin listener (its own HTTP server) on a free loopback port, and an aiohttp client
session pointed at it: ``get``, ``post``, ``put``, ``head``, ``request`` take a path, as aiohttp's
test client does."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
from yarl import URL

from agent.admin.app import AdminApp
from agent.admin.http import AdminServer


class AdminClient:
    def __init__(self, server: AdminServer, base: str) -> None:
        self.server = server
        self.base = base
        # unsafe: cookies for an IP address host (the status page's login cookie), as a browser keeps them
        self.session = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))

    @property
    def port(self) -> int:
        return self.server.port

    def make_url(self, path: str) -> URL:
        return URL(self.base + path)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.session.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Any:
        return self.request("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    async def close(self) -> None:
        await self.session.close()
        await self.server.close(1.0)


async def serve_admin(app: AdminApp, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None) -> AdminClient:
    """``app`` served as the agent serves it, on a free port of ``host``."""
    server = app.server()
    bound_host, port = await server.start(host, 0, tls=tls)
    scheme = "https" if tls is not None else "http"
    return AdminClient(server, f"{scheme}://{bound_host}:{port}")
