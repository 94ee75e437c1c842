"""A small app that serves HTTPS, in a thread of its own, and counts the TLS handshakes it completes.

It stands for an app that speaks TLS itself (``upstream.url = "https://..."``)::

    with HttpsApp(pki.server, client_ca_file=pki.ca_file) as app:   # client_ca_file: mTLS required
        app.url            # https://localhost:PORT
        app.handshakes     # server-side handshakes begun (the SNI callback runs once per ClientHello)
        app.connections    # distinct client ports seen by requests

Routes: ``GET /health`` 200 ``{"status": "ok"}``; ``* /echo`` the request's headers, the client
port and the client certificate's subject, as JSON.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Any

from aiohttp import web

from tests.support.pki import Pair

START_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 2.0


async def _settle() -> None:
    """Let handshakes still under way end (the peer has usually gone already), cancel what remains,
    and give the loop a few turns: asyncio closes a failed handshake's socket in a callback it
    schedules, and a socket left to the loop's close is only found by the garbage collector."""
    pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=SETTLE_TIMEOUT_S)
        for task in still:
            task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
    await asyncio.sleep(0.05)


class HttpsApp:
    def __init__(self, pair: Pair, *, client_ca_file: str | None = None) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pair.cert_file, pair.key_file)
        if client_ca_file:
            self.context.load_verify_locations(client_ca_file)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.sni_callback = self._on_client_hello
        self.handshakes = 0
        self.server_names: list[str | None] = []
        self.ports: set[int] = set()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def connections(self) -> int:
        return len(self.ports)

    def _on_client_hello(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        self.handshakes += 1
        self.server_names.append(server_name)

    def _seen(self, request: web.Request) -> tuple[int | None, Any]:
        """The client's port (recorded) and its certificate's subject, if it sent one."""
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport else None
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        if peer:
            self.ports.add(peer[1])
        certificate = ssl_object.getpeercert() if ssl_object is not None else None
        return (peer[1] if peer else None), (certificate or {}).get("subject")

    async def _echo(self, request: web.Request) -> web.Response:
        port, subject = self._seen(request)
        headers = [[k, v] for k, v in request.headers.items()]
        return web.json_response({"headers": headers, "port": port, "client_subject": subject})

    async def _health(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.json_response({"status": "ok"})

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/echo", self._echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.context)
        await site.start()
        self.port = runner.addresses[0][1]
        self._stopped = asyncio.Event()
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            await runner.cleanup()
            await _settle()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    def __enter__(self) -> HttpsApp:
        self._thread = threading.Thread(target=self._run, name="https-app", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError("the HTTPS app did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
