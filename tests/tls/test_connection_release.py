"""A closed TLS connection gives back its TLS state at once, not when the cyclic GC gets to it.

The main listener's protocol object sits in reference cycles (its parser's callbacks, its
exchanges), so it lives until the cyclic collector runs, and for a connection that lasted past a
young collection that is a full one, thousands of connections later. Over TLS whatever it still
references then includes the event loop's SSL protocol: a 256 KiB read buffer and OpenSSL's
state per connection, ~0.5 KiB of RSS growth per new connection under a handshake load
(``python -m bench.tls_rss``). With the collector off, no server-side TLS object (the listener's
counting ``SSLObject`` class, one per connection) may outlive its closed connection, on uvloop
(what the agent runs on) and on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest

from agent.app import create_main, create_metrics, create_monitor
from agent.config import build_config
from agent.tls import TlsListener
from tests.support.agent import http_get
from tests.support.pki import Pki
from tests.tls.conftest import listener_tls

CONNECTIONS = 30


def _loop_factories() -> list[Any]:
    factories: list[Any] = [pytest.param(None, id="asyncio")]
    try:
        import uvloop

        factories.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    except ImportError:
        pass
    return factories


async def _retained_after_closes(pki: Pki) -> int:
    config = build_config(
        {"server": {"tls": listener_tls(pki.server)}, "checks": {"upstream": {"enabled": False}, "disk": {"enabled": False}}},
        {},
        "test",
    )
    tls = TlsListener("main", config.server.tls)
    monitor = create_monitor(config)
    registry, http_metrics = create_metrics(config, monitor)
    listener = create_main(config, monitor, registry, http_metrics)
    host, port = await listener.start("127.0.0.1", 0, tls=tls.context)
    counting = tls.context.current.sslobject_class
    try:
        for _ in range(CONNECTIONS):  # new connection, full handshake, one request, closed by the agent
            response = await asyncio.to_thread(http_get, f"https://{host}:{port}/health/live", headers={"Connection": "close"})
            assert response.status == 200
        for _ in range(100):  # the last connection_lost callbacks
            await asyncio.sleep(0.01)
            if not listener.ctx.connections:
                break
        await asyncio.sleep(0.05)
        return sum(1 for obj in gc.get_objects() if isinstance(obj, counting))
    finally:
        await listener.close(1.0)


@pytest.mark.parametrize("loop_factory", _loop_factories())
def test_closed_tls_connections_keep_no_tls_object(
    pki: Pki, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
) -> None:
    gc.collect()
    gc.disable()  # what the cyclic collector would free later must not be what frees TLS state
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            retained = runner.run(_retained_after_closes(pki))
    finally:
        gc.enable()
        gc.collect()
    assert retained == 0, f"{retained} of {CONNECTIONS} closed connections still hold their TLS object"
