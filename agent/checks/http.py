"""``http`` check: GET a URL (by default the upstream app's health path) and judge the status.

One keep-alive connection, HTTP/1.1, the response read with llhttp (``httptools``, which the
main listener parses with too): no client library is loaded for a check that sends one fixed
request. Redirects are never followed; at most ``MAX_BODY_BYTES`` of the body are read, and a
connection whose response was not read whole (or that the server will close) is not reused.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

import httptools

from agent.checks.base import CheckResult, failed, passed

StatusRanges = tuple[tuple[int, int], ...]

MAX_BODY_BYTES = 64 * 1024
READ_BYTES = 16 * 1024
USER_AGENT = b"sidecar-agent-check"


class HttpCheckError(Exception):
    """The server's answer was not a usable HTTP/1.x response."""


class _Response:
    """llhttp callbacks for one response: whether its head and all of it were read.

    An interim response (1xx, say 103 Early Hints) is skipped: the final one follows it.
    """

    def __init__(self) -> None:
        self.parser: httptools.HttpResponseParser | None = None
        self.head_read = False
        self.status = 0
        self.body_bytes = 0
        self.complete = False
        self.keep_alive = False  # read as it completes: llhttp resets for the next message after

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        self.head_read = self.status >= 200

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        if self.head_read:
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()


def request_bytes(target: str, authority: str) -> bytes:
    """The check's request: ``GET`` with ``Host`` and the agent's ``User-Agent``, nothing else."""
    return b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n\r\n" % (
        target.encode("ascii"),
        authority.encode("idna") if not authority.isascii() else authority.encode("ascii"),
        USER_AGENT,
    )


class HttpProbe:
    """Owns one connection to the URL's server; ``check`` GETs the URL."""

    def __init__(self, url: str, expect: StatusRanges, *, unix_socket: str = "", tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.url = url
        self.expect = expect
        self.unix_socket = unix_socket
        https = parts.scheme == "https"
        # for https:// URLs; None: the system trust store
        self.tls: ssl.SSLContext | None = (tls or ssl.create_default_context()) if https else None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if https else 80)
        target = parts.path or "/"
        self._request = request_bytes(target + (f"?{parts.query}" if parts.query else ""), parts.netloc.rpartition("@")[2])
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def check(self) -> CheckResult:
        # The caller's timeout bounds the whole exchange (connect, TLS, response).
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                code, reusable = await self._exchange(conn)
            except (ConnectionError, HttpCheckError, EOFError):
                # The server closed the idle connection first (keep-alive timeout): one new try.
                _close(conn)
                conn = None
        if conn is None:
            conn = await self._connect()
            code, reusable = await self._exchange(conn)
        if reusable:
            self._conn = conn
        else:
            _close(conn)
        if any(low <= code <= high for low, high in self.expect):
            return passed(status_code=code)
        return failed(f"unexpected status {code}", status_code=code)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_socket:
            return await asyncio.open_unix_connection(self.unix_socket, limit=READ_BYTES)
        try:
            return await asyncio.open_connection(
                self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None, limit=READ_BYTES
            )
        except OSError as exc:
            raise ConnectionError(f"Cannot connect to host {self.host}:{self.port}: {exc.strerror or exc}") from None

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> tuple[int, bool]:
        """(status, whether the connection may carry the next check); closes ``conn`` on any failure."""
        reader, writer = conn
        response = _Response()
        parser = response.parser = httptools.HttpResponseParser(response)
        try:
            writer.write(self._request)
            while not response.complete:
                data = await reader.read(READ_BYTES)
                if not data:
                    if response.head_read:
                        break  # a body delimited by the close: the status is what counts
                    raise EOFError("connection closed before a response")
                parser.feed_data(data)
                if response.head_read and response.body_bytes > MAX_BODY_BYTES:
                    break
        except httptools.HttpParserError as exc:
            _close(conn)
            raise HttpCheckError(f"invalid HTTP response: {exc}") from None
        except BaseException:
            _close(conn)
            raise
        return response.status, response.complete and response.keep_alive and not reader.at_eof()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            _close(conn)


def _close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    conn[1].close()
