"""The Prometheus exposition: content negotiation and gzip with prometheus_client's own functions.

``choose_encoder`` picks OpenMetrics 1.0.0 when the ``Accept`` header asks for it (Prometheus
does by default) and the classic text format 0.0.4 otherwise; ``gzip_accepted`` reads
``Accept-Encoding``. ``names`` restricts the output, as ``?name[]=...`` does in
prometheus_client's own servers. The admin listener's handler (``agent.admin.metrics``) and the
main listener's fallback page both render through :func:`render`.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

# zlib level 6 (its default) is several times cheaper than gzip.compress()'s 9 on this kind of
# text and compresses it within a few percent of it.
GZIP_LEVEL = 6


def render(registry: CollectorRegistry, accept: str, accept_encoding: str, names: list[str]) -> tuple[bytes, dict[str, str]]:
    """The response body and headers for one scrape."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry.restricted_registry(names) if names else registry)
    headers = {"Content-Type": content_type, "Cache-Control": "no-store", "Vary": "Accept, Accept-Encoding"}
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body, compresslevel=GZIP_LEVEL)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def make_metrics_page(registry: CollectorRegistry) -> Callable[[bytes], tuple[bytes, bytes]]:
    """For the main listener's own HTTP layer (``admin.enabled = false``): ``Accept`` -> (Content-Type, body).

    Content negotiation as above; no gzip, no ``name[]`` (that layer writes its own headers).
    It renders inline, on the loop.
    """

    def page(accept: bytes) -> tuple[bytes, bytes]:
        body, headers = render(registry, accept.decode("latin-1"), "", [])
        return headers["Content-Type"].encode("latin-1"), body

    return page
