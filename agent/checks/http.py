"""``http`` check: GET a URL (by default the upstream app's health path) and judge the status."""

from __future__ import annotations

import ssl

import aiohttp

from agent.checks.base import CheckResult, failed, passed

StatusRanges = tuple[tuple[int, int], ...]


class HttpProbe:
    """Owns one small client session; ``check`` GETs the URL, never follows redirects."""

    def __init__(self, url: str, expect: StatusRanges, *, unix_socket: str = "", tls: ssl.SSLContext | None = None) -> None:
        self.url = url
        self.expect = expect
        self.unix_socket = unix_socket
        self.tls = tls  # for https:// URLs; None: the system trust store
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(path=self.unix_socket, limit=2)
                if self.unix_socket
                else aiohttp.TCPConnector(limit=2, use_dns_cache=True, ssl=self.tls if self.tls is not None else True)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": "sidecar-agent-check"},
                auto_decompress=False,
            )
        return self._session

    async def check(self) -> CheckResult:
        # The caller's timeout bounds the whole exchange; aiohttp's own 300 s default never applies.
        async with self._get_session().get(self.url, allow_redirects=False) as response:
            await response.content.read(64 * 1024)  # drain a little so the connection can be reused
            code = response.status
        if any(low <= code <= high for low, high in self.expect):
            return passed(status_code=code)
        return failed(f"unexpected status {code}", status_code=code)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
