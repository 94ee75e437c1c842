"""Header rules for forwarding (RFC 9110 §7.6.1 hop-by-hop, X-Forwarded-*)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Trailer",
        "Content-Length",
        "Host",
    )
)
# Content-Length and Host are not hop-by-hop, but the forwarding side sets them itself.


def strip_hop_by_hop(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """A copy without hop-by-hop headers, including every name listed in ``Connection``.

    Run before the agent adds its own headers, so a client's ``Connection: X-Request-ID`` can
    never remove what the agent sets.
    """
    named = {token.strip().lower() for value in headers.getall("Connection", ()) for token in value.split(",")}
    drop = HOP_BY_HOP | named
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)

    def __contains__(self, peer: str | None) -> bool:
        if not peer or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)
