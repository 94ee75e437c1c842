"""CORS (Fetch Standard §3.2) as one rule: which headers answer a request from an ``Origin``.

Off unless origins are configured. An allowed origin is echoed (``*`` only when any origin is
allowed and credentials are not: the Fetch Standard refuses ``*`` with credentials, and the
config refuses that pair). Each header appears exactly once: a browser rejects a credentialed
response whose ``Access-Control-Allow-Credentials`` is ``true, true``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import CorsConfig

Pairs = tuple[tuple[str, str], ...]


class Cors:
    __slots__ = ("_common", "_preflight", "allow_any", "credentials", "enabled", "origins")

    def __init__(
        self,
        *,
        allowed_origins: Iterable[str],
        allow_credentials: bool,
        allowed_methods: Iterable[str],
        allowed_headers: Iterable[str],
        expose_headers: Iterable[str],
        max_age_s: int,
    ) -> None:
        origins = tuple(allowed_origins)
        self.enabled = bool(origins)
        self.allow_any = "*" in origins
        self.origins = frozenset(origins)
        self.credentials = allow_credentials
        common: list[tuple[str, str]] = [("Vary", "Origin")]
        if allow_credentials:
            common.append(("Access-Control-Allow-Credentials", "true"))
        expose = ", ".join(expose_headers)
        if expose:
            common.append(("Access-Control-Expose-Headers", expose))
        self._common: Pairs = tuple(common)
        self._preflight: Pairs = (
            ("Access-Control-Allow-Methods", ", ".join(allowed_methods)),
            ("Access-Control-Allow-Headers", ", ".join(allowed_headers)),
            ("Access-Control-Max-Age", str(max_age_s)),
        )

    @classmethod
    def from_config(cls, config: CorsConfig) -> Cors:
        return cls(
            allowed_origins=config.allowed_origins,
            allow_credentials=config.allow_credentials,
            allowed_methods=config.allowed_methods,
            allowed_headers=config.allowed_headers,
            expose_headers=config.expose_headers,
            max_age_s=config.max_age_s,
        )

    def allows(self, origin: str | None) -> bool:
        return self.enabled and origin is not None and (self.allow_any or origin in self.origins)

    def response_headers(self, origin: str | None) -> Pairs:
        """For an actual (non-preflight) response; empty when the origin is not allowed."""
        if origin is None or not self.allows(origin):
            return ()
        allow = "*" if self.allow_any and not self.credentials else origin
        return (("Access-Control-Allow-Origin", allow), *self._common)

    def preflight_headers(self, origin: str | None) -> Pairs:
        """For the agent's answer to a preflight; empty when the origin is not allowed."""
        actual = self.response_headers(origin)
        return (*actual, *self._preflight) if actual else ()
