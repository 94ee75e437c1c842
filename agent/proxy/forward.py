"""Forward a request to the upstream app with aiohttp's client, streaming both bodies.

This is the straightforward implementation: correct streaming, hop-by-hop stripping, forwarded
headers and the agent's JSON errors for a failing upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from agent.config import ProxyConfig, UpstreamConfig
from agent.errors import error_response
from agent.middlewares.request_context import REQUEST_ID_KEY, TRACEPARENT_KEY
from agent.proxy.headers import TrustedProxies, strip_hop_by_hop

log = logging.getLogger("agent.proxy")

CHUNK_BYTES = 64 * 1024
UPSTREAM_MS_KEY = web.RequestKey("upstream_ms", float)


def make_client_session(upstream: UpstreamConfig) -> aiohttp.ClientSession:
    connector: aiohttp.BaseConnector
    if upstream.url.startswith("unix:"):
        connector = aiohttp.UnixConnector(path=upstream.url[5:], limit=upstream.max_connections, keepalive_timeout=4.0)
    else:
        connector = aiohttp.TCPConnector(limit=upstream.max_connections, keepalive_timeout=4.0)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=upstream.connect_timeout_s, sock_read=upstream.read_timeout_s),
    )


class Forwarder:
    def __init__(
        self, session: aiohttp.ClientSession, upstream: UpstreamConfig, proxy: ProxyConfig, *, request_id_header: str
    ) -> None:
        self.session = session
        self.base = "http://localhost" if upstream.url.startswith("unix:") else upstream.url.rstrip("/")
        self.max_body_bytes = proxy.max_body_bytes
        self.trusted = TrustedProxies(proxy.trusted_proxies)
        self.request_id_header = request_id_header

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        headers = strip_hop_by_hop(request.headers)
        peer = request.remote or ""
        trusted = peer in self.trusted
        prior = request.headers.get("X-Forwarded-For") if trusted else None
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        if not trusted:
            headers.popall("X-Forwarded-Proto", None)
            headers.popall("X-Forwarded-Host", None)
            headers.popall("Forwarded", None)
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        if request.host:
            headers.setdefault("X-Forwarded-Host", request.host)
            headers["Host"] = request.host
        headers[self.request_id_header] = request[REQUEST_ID_KEY]
        headers["traceparent"] = request[TRACEPARENT_KEY]
        if request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        return headers

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            return error_response(413, "PAYLOAD_TOO_LARGE", log_level=logging.INFO, limit_bytes=self.max_body_bytes)
        body = self._limited_body(request) if request.body_exists else None
        url = URL(self.base + request.raw_path, encoded=True)
        started = time.perf_counter()
        try:
            upstream = await self.session.request(
                request.method, url, headers=self._upstream_headers(request), data=body, allow_redirects=False
            )
        except _BodyTooLarge:
            return error_response(413, "PAYLOAD_TOO_LARGE", log_level=logging.INFO, limit_bytes=self.max_body_bytes)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return error_response(504, "UPSTREAM_TIMEOUT", reason="timeout")
        except aiohttp.ClientConnectorError as exc:
            return error_response(502, "UPSTREAM_UNAVAILABLE", reason="connect", detail=type(exc).__name__)
        except (aiohttp.ClientError, ConnectionError) as exc:
            return error_response(502, "UPSTREAM_UNAVAILABLE", reason="reset", detail=type(exc).__name__)
        request[UPSTREAM_MS_KEY] = (time.perf_counter() - started) * 1000
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.extend(strip_hop_by_hop(upstream.headers))
            if upstream.headers.get("Content-Length") is not None and request.method != "HEAD":
                response.content_length = int(upstream.headers["Content-Length"])
            elif request.method == "HEAD" and "Content-Length" in upstream.headers:
                response.headers["Content-Length"] = upstream.headers["Content-Length"]
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                await response.write(chunk)
            await response.write_eof()
            return response
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            # Headers are already sent: a clean short response would lie. Cut the connection.
            log.warning("upstream failed mid-response", extra={"detail": type(exc).__name__})
            upstream.close()
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError from exc
        finally:
            upstream.release()

    async def _limited_body(self, request: web.Request):  # type: ignore[no-untyped-def]
        seen = 0
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            seen += len(chunk)
            if seen > self.max_body_bytes:
                raise _BodyTooLarge
            yield chunk


class _BodyTooLarge(Exception):
    pass
