"""The admin listener's ``/metrics``: an adapter over :func:`agent.metrics.exposition.render`.

Rendering runs in a worker thread (prometheus_client's collectors take their own locks), so a
large scrape (tens of milliseconds with 200 routes, see bench/metrics.py) never stalls probes or
proxied requests.
"""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from agent.metrics.exposition import render


def make_metrics_handler(registry: CollectorRegistry) -> Handler:
    async def metrics(request: web.Request) -> web.StreamResponse:
        body, headers = await asyncio.to_thread(
            render,
            registry,
            ",".join(request.headers.getall(hdrs.ACCEPT, ())),
            ",".join(request.headers.getall(hdrs.ACCEPT_ENCODING, ())),
            request.query.getall("name[]", []),
        )
        return web.Response(body=body, headers=headers)

    return metrics
