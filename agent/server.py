"""Listeners, signals, and the drain-then-stop sequence.

Signal table (installed before any port is bound, so an early SIGTERM still drains):

| signal            | first time                                    | second time       |
| ----------------- | --------------------------------------------- | ----------------- |
| SIGTERM, SIGINT   | drain: readiness 503 at once, keep serving    | exit 1 at once    |
|                   | ``drain_delay_s``, close listeners, wait for  |                   |
|                   | in-flight requests up to ``shutdown_timeout_s``, |                |
|                   | close checks' connections, exit 0             |                   |

Kubernetes marks a terminating pod's endpoints not-ready asynchronously, so traffic can keep
arriving for a few seconds after SIGTERM; the drain delay is what keeps those requests from
being refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from agent import __version__, compiled
from agent.app import create_admin_app, create_main, create_metrics, create_monitor, create_tracer
from agent.config import AgentConfig, parse_listen
from agent.health.monitor import Monitor
from agent.metrics.tls import TlsCollector
from agent.proxy.listener import MainListener
from agent.tls import TlsError, TlsListener
from agent.tracing import Tracer

if TYPE_CHECKING:  # imported only when the admin listener is on
    from agent.admin.http import AdminServer

log = logging.getLogger("agent.server")

ADMIN_SHUTDOWN_TIMEOUT_S = 2.0


class StartupError(Exception):
    """The agent cannot start (port in use, bad certificate); ``str()`` is the one-line reason."""


class Server:
    def __init__(self, config: AgentConfig, *, on_started: Callable[[Server], Awaitable[None]] | None = None) -> None:
        self.config = config
        self.monitor: Monitor = create_monitor(config)
        self._stop = asyncio.Event()
        self._signals_seen = 0
        self._admin: AdminServer | None = None
        self._main: MainListener | None = None
        self._on_started = on_started
        self.addresses: dict[str, tuple[str, int]] = {}
        self.tls: dict[str, TlsListener] = {}
        self.tracer: Tracer | None = None
        self._reloader: asyncio.Task[None] | None = None

    async def serve(self) -> int:
        """Run until signalled; 0 after a clean drain, 1 when the agent cannot start."""
        self._install_signal_handlers()
        try:
            await self.startup()
        except StartupError as exc:
            log.error("cannot start", extra={"reason": str(exc)})
            await self._close_runners()
            return 1
        if self._on_started is not None:
            await self._on_started(self)
        await self._stop.wait()
        await self.shutdown()
        return 0

    async def startup(self) -> None:
        self.tls = tls_listeners(self.config)
        registry, http_metrics = create_metrics(self.config, self.monitor)
        if self.tls:
            registry.register(TlsCollector(self.tls.values()))
        self.tracer = create_tracer(self.config, registry)
        self._main = create_main(self.config, self.monitor, registry, http_metrics, self.tracer)
        # Both apps are built before either binds, so the listeners open back to back: nothing sees
        # the main port answer while the admin port refuses.
        admin_app = None
        if self.config.admin.enabled:
            admin_app = create_admin_app(self.config, self.monitor, registry, tunnels_open=lambda: http_metrics.tunnels_open)
        host, port = parse_listen(self.config.server.listen)
        main_tls = self.tls.get("main")
        try:
            self.addresses["main"] = await self._main.start(host, port, tls=main_tls.context if main_tls else None)
        except OSError as exc:
            self._main = None
            raise StartupError(f"main listener {self.config.server.listen}: {exc.strerror or exc}") from None
        if admin_app is not None:
            self._admin = admin_app.server()
            admin_tls = self.tls.get("admin")
            host, port = parse_listen(self.config.admin.listen)
            try:
                self.addresses["admin"] = await self._admin.start(host, port, tls=admin_tls.context if admin_tls else None)
            except OSError as exc:
                self._admin = None
                raise StartupError(f"admin listener {self.config.admin.listen}: {exc.strerror or exc}") from None
        self.monitor.start()
        if self.tls:
            self._reloader = asyncio.create_task(self._reload_certificates(), name="tls-reloader")
        warn_unverified_upstream(self.config)
        log.info(
            "agent started",
            extra={
                "version": __version__,
                "python": sys.version.split()[0],
                "listeners": {name: f"{host}:{port}" for name, (host, port) in self.addresses.items()},
                "upstream": self.config.upstream.url,
                "checks": [c.name for c in self.config.checks],
                "config_source": self.config.source,
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                "code": compiled.code,
            },
        )

    def request_stop(self, reason: str = "requested") -> None:
        """Begin the drain, as a first SIGTERM does."""
        if not self._stop.is_set():
            self.monitor.set_draining(True, reason)
            self._stop.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload_certificates)

    def reload_certificates(self) -> None:
        """SIGHUP: load every TLS listener's files again now."""
        log.info("SIGHUP: reloading certificates", extra={"listeners": sorted(self.tls)})
        for listener in self.tls.values():
            listener.reload(force=True)

    async def _reload_certificates(self) -> None:
        """Check the certificate files for changes every ``reload_interval_s``."""
        interval_s = min(listener.config.reload_interval_s for listener in self.tls.values())
        while True:
            await asyncio.sleep(interval_s)
            for listener in self.tls.values():
                listener.reload()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals_seen += 1
        if self._signals_seen > 1:
            log.error("second signal: exiting now, without finishing the drain", extra={"signal": sig.name})
            logging.shutdown()
            os._exit(1)
        log.info("signal received: draining", extra={"signal": sig.name, "drain_delay_s": self.config.server.drain_delay_s})
        self.request_stop(f"signal {sig.name}")

    async def shutdown(self) -> None:
        """Readiness is already 503. Keep serving for the drain delay, then stop, bounded."""
        started = time.monotonic()
        await asyncio.sleep(self.config.server.drain_delay_s)
        log.info("drain delay over: closing listeners", extra={"shutdown_timeout_s": self.config.server.shutdown_timeout_s})
        await self._close_runners()
        await self._flush_spans(started + self.config.server.drain_delay_s + self.config.server.shutdown_timeout_s)
        await self.monitor.stop()
        log.info("agent stopped", extra={"shutdown_s": round(time.monotonic() - started, 3)})

    async def _flush_spans(self, deadline: float) -> None:
        """Export what is queued, in a thread, within what is left of the shutdown timeout."""
        if self.tracer is None:
            return
        timeout_s = max(0.5, deadline - time.monotonic())
        flushed = await asyncio.get_running_loop().run_in_executor(None, self.tracer.shutdown, timeout_s)
        if not flushed:
            log.warning("spans still queued at shutdown were not exported", extra={"timeout_s": round(timeout_s, 3)})

    async def _close_runners(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            await asyncio.gather(self._reloader, return_exceptions=True)
            self._reloader = None
        # Main first (it waits for in-flight requests), admin last so scrapes see the drain.
        if self._main is not None:
            await self._main.close(self.config.server.shutdown_timeout_s)
            self._main = None
        if self._admin is not None:
            await self._admin.close(ADMIN_SHUTDOWN_TIMEOUT_S)
            self._admin = None


def tls_listeners(config: AgentConfig) -> dict[str, TlsListener]:
    """The listeners that serve TLS, their certificates loaded; :class:`StartupError` when one cannot."""
    wanted = {"main": config.server.tls, "admin": config.admin.tls if config.admin.enabled else None}
    listeners = {}
    for name, tls in wanted.items():
        if tls is None or not tls.enabled:
            continue
        try:
            listeners[name] = TlsListener(name, tls)
        except TlsError as exc:
            raise StartupError(f"{name} listener TLS: {exc}") from None
    return listeners


def warn_unverified_upstream(config: AgentConfig) -> None:
    if config.upstream.url.startswith("https://") and not config.upstream.tls.verify:
        log.warning(
            "upstream.tls.verify = false: the app's certificate is NOT verified; anyone on the path can impersonate it",
            extra={"upstream": config.upstream.url},
        )


def run_with_best_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run ``main()`` on uvloop when it is installed, else asyncio's default loop."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def run_server(config: AgentConfig) -> int:
    return run_with_best_loop(lambda: Server(config).serve())
