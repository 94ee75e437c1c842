"""The admin listener's ``/metrics``: an adapter over :func:`agent.metrics.exposition.render`.

Rendering runs in a worker thread (prometheus_client's collectors take their own locks), so a
large scrape (tens of milliseconds with 200 routes, see bench/metrics.py) never stalls probes or
proxied requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from agent.admin.http import Request, Response
from agent.metrics.exposition import render


def make_metrics_handler(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        body, headers = await asyncio.to_thread(
            render,
            registry,
            ",".join(request.headers.getall("Accept")),
            ",".join(request.headers.getall("Accept-Encoding")),
            request.query_all("name[]"),
        )
        return Response(200, body, headers=headers)

    return metrics
