"""Security headers on every response the agent sends (SPEC §5), as one rule.

Given the header names a response already has (lower-case) and whether the request came over
HTTPS, the rule says which of the response's headers to drop and which to add:

- the fingerprinting headers on ``security_headers.remove`` are always dropped;
- each configured header is added when the response lacks it; with ``override = true`` it is
  added always and the response's own value is dropped, so exactly one value goes out;
- ``Strict-Transport-Security`` the same way, when ``hsts = "always"``, or ``"https"`` and the
  request was HTTPS (RFC 6797 §7.2: never over plain HTTP otherwise).

:class:`SecurityHeaders` also keeps the headers to add pre-encoded for the common case (a
response with none of them), so the proxy concatenates bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from agent.config import SecurityHeadersConfig

HSTS: Final = "strict-transport-security"
Pairs = tuple[tuple[str, str], ...]


class SecurityHeaders:
    __slots__ = ("_blocks", "_dropped", "_pairs", "hsts", "hsts_value", "names", "override", "remove", "watched")

    def __init__(
        self, headers: Iterable[tuple[str, str]], *, remove: Iterable[str], override: bool, hsts: str, hsts_value: str
    ) -> None:
        self._pairs: Pairs = tuple(headers)
        self.names = frozenset(name.lower() for name, _ in self._pairs)
        self.remove = frozenset(name.lower() for name in remove)
        self.override = override
        self.hsts = hsts
        self.hsts_value = hsts_value
        # Names whose presence on a response changes what is added.
        self.watched = self.names | {HSTS}
        self._dropped = {https: self._dropped_for(https) for https in (False, True)}
        self._blocks = {https: encode(self.added(frozenset(), https)) for https in (False, True)}

    @classmethod
    def from_config(cls, config: SecurityHeadersConfig) -> SecurityHeaders:
        return cls(config.headers, remove=config.remove, override=config.override, hsts=config.hsts, hsts_value=config.hsts_value)

    def wants_hsts(self, https: bool) -> bool:
        return self.hsts == "always" or (self.hsts == "https" and https)

    def _dropped_for(self, https: bool) -> frozenset[str]:
        if not self.override:
            return self.remove
        return self.remove | self.names | ({HSTS} if self.wants_hsts(https) else frozenset())

    def dropped(self, https: bool) -> frozenset[str]:
        """Lower-case names removed from a response before the agent adds its own."""
        return self._dropped[https]

    def added(self, present: frozenset[str], https: bool) -> Pairs:
        """Headers to add to a response that (after :meth:`dropped`) has the names ``present``."""
        pairs = self._pairs if self.override else tuple(p for p in self._pairs if p[0].lower() not in present)
        if self.wants_hsts(https) and (self.override or HSTS not in present):
            pairs += (("Strict-Transport-Security", self.hsts_value),)
        return pairs

    def encoded(self, present: frozenset[str] | set[str], https: bool) -> bytes:
        """:meth:`added` as header lines; pre-encoded when none of them is present."""
        if not present or self.override:
            return self._blocks[https]
        return encode(self.added(frozenset(present), https))

    def apply(self, headers: Iterable[tuple[str, str]], https: bool) -> list[tuple[str, str]]:
        """The whole rule on a header list: what a response carries once the agent is done."""
        dropped = self.dropped(https)
        kept = [(name, value) for name, value in headers if name.lower() not in dropped]
        present = frozenset(name.lower() for name, _ in kept) & self.watched
        return kept + list(self.added(present, https))


def encode(pairs: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs)
