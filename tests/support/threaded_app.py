"""An aiohttp app served from its own thread and event loop, for tests whose own thread blocks.

Tests that drive a real agent subprocess call blocking clients (``http.client``, ``psutil``,
``subprocess``); an app served by the test's own loop would stall while they wait. Here the app
runs on a loop in a daemon thread, on 127.0.0.1, until :meth:`ThreadedApp.stop`.
:meth:`ThreadedApp.down` closes the listening socket and every open connection (the peer sees
connection refused); :meth:`ThreadedApp.up` listens on the same port again. The app should have
no startup or cleanup hooks: they would run at every :meth:`ThreadedApp.up` and ``down``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from tests.support.net import free_port

START_TIMEOUT_S = 10.0
T = TypeVar("T")


class ThreadedApp:
    def __init__(self, app: web.Application, port: int | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.tls = tls  # a server context: the app speaks HTTPS
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="threaded-app", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = START_TIMEOUT_S) -> T:
        """Run ``make()`` on the app's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(_await(make), self._loop).result(timeout)

    def start(self) -> ThreadedApp:
        self._thread.start()
        self.up()
        return self

    def up(self) -> None:
        self.call(self._listen)

    def down(self) -> None:
        """Stop listening and close every connection; the port stays reserved for :meth:`up`."""
        self.call(self._close)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self._close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()

    async def _listen(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.tls)
        await site.start()
        self._runner = runner

    async def _close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            if self.tls is not None and runner.server is not None:
                # A TLS close waits for the peer's close_notify, which a stopping loop never sees;
                # aborted, the sockets close now instead of being found unclosed by the GC later.
                for handler in list(runner.server.connections):
                    if handler.transport is not None:
                        handler.transport.abort()
                await asyncio.sleep(0)
            await runner.shutdown()
            await runner.cleanup()

    def __enter__(self) -> ThreadedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _await(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()
