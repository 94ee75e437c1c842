"""Bounded ``route`` label values: raw request paths folded into at most ``max_routes`` templates.

A path becomes, in order: its fixed route (health and metrics paths), the first configured
template it matches (``/api/v1/plans/{id}``), or the path with identifier-like segments folded to
``{id}``. Once ``max_routes`` distinct folded routes exist, any new one is ``other``: a scanner
sending random paths can add at most ``max_routes`` values (starlette_exporter#14,
artifact-keeper#2220 are what happens otherwise). Results are cached in a bounded dict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

OTHER: Final = "other"
ID: Final = "{id}"
DEFAULT_CACHE_SIZE: Final = 8192

_TEMPLATE_PARAM: Final = re.compile(r"^\{[^{}/]*\}$")
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX: Final = re.compile(r"^[0-9a-fA-F]+$")
# Digits with separators: dates, versions, IP addresses ("2024-01-31", "1.2.3", "10.0.0.1").
_NUMERIC_ISH: Final = re.compile(r"^[0-9][0-9._:-]*$")
# What a route name is made of; anything else ("%", "@", "=", "+", ...) marks a value.
_WORD: Final = re.compile(r"^[A-Za-z0-9._~:-]*$")
_HAS_DIGIT: Final = re.compile(r"[0-9]")
_HAS_LETTER: Final = re.compile(r"[A-Za-z]")
TOKEN_MIN_CHARS: Final = 16  # ULIDs (26), nanoids (21), base64 tokens; route words with digits are short ("v1", "oauth2")
LONG_SEGMENT_CHARS: Final = 40  # longer than any sensible route word


def is_identifier(segment: str) -> bool:
    """True for a path segment that names a thing rather than a route: numbers, UUIDs, long hex, tokens."""
    if not segment:
        return False
    if segment.isdigit() or _NUMERIC_ISH.match(segment):
        return True
    if len(segment) > LONG_SEGMENT_CHARS or not _WORD.match(segment):
        return True
    has_digit = _HAS_DIGIT.search(segment) is not None
    if _HEX.match(segment) and (len(segment) >= TOKEN_MIN_CHARS or (has_digit and len(segment) >= 8)):
        return True
    if len(segment) == 36 and _UUID.match(segment):
        return True
    return len(segment) >= TOKEN_MIN_CHARS and has_digit and _HAS_LETTER.search(segment) is not None


def fold_identifiers(path: str) -> str:
    """``/users/42/orders/9f1c...`` -> ``/users/{id}/orders/{id}``."""
    segments = path.split("/")
    return "/".join(ID if is_identifier(s) else s for s in segments)


def _template_pattern(template: str) -> str:
    if not template.startswith("/"):
        raise ValueError(f"route template must start with '/': {template!r}")
    parts = []
    for segment in template.split("/"):
        parts.append("[^/]+" if _TEMPLATE_PARAM.match(segment) else re.escape(segment))
    return "/".join(parts)


# No route template is this long; longer folded paths are scanners or garbage.
MAX_ROUTE_CHARS: Final = 256


class RouteFolder:
    """``fold(raw_path)`` -> a bounded route label value. Not thread-safe; use from one event loop."""

    __slots__ = ("_cache", "_cache_size", "_fixed", "_known", "_max_routes", "_template_re", "_templates")

    def __init__(
        self,
        templates: Iterable[str] = (),
        *,
        max_routes: int,
        fixed_routes: Iterable[str] = (),
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if max_routes < 1:
            raise ValueError(f"max_routes must be >= 1, got {max_routes}")
        self._templates = tuple(dict.fromkeys(templates))
        # One alternation; ``lastindex`` names the first template that matched, so order is priority.
        self._template_re = (
            re.compile("|".join(f"^({_template_pattern(t)})$" for t in self._templates)) if self._templates else None
        )
        self._fixed = frozenset(fixed_routes)
        self._max_routes = max_routes
        self._known: set[str] = set()
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    @property
    def routes(self) -> frozenset[str]:
        """The folded routes admitted so far (not counting fixed routes, templates and ``other``)."""
        return frozenset(self._known)

    def fold(self, raw_path: str) -> str:
        """The route for a request target (a query string is ignored)."""
        path = raw_path.partition("?")[0]
        route = self._cache.get(path)
        if route is not None:
            return route
        route = self._fold_uncached(path)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # cheaper than LRU bookkeeping; hot paths refill at once
        self._cache[path] = route
        return route

    def _fold_uncached(self, path: str) -> str:
        if path in self._fixed:
            return path
        if not path.startswith("/"):
            return OTHER  # "*" (OPTIONS *), authority or absolute form: not a route of this API
        if self._template_re is not None:
            match = self._template_re.match(path)
            if match is not None and match.lastindex is not None:
                return self._templates[match.lastindex - 1]  # configured: always admitted, not counted
        route = fold_identifiers(path)
        if len(route) > MAX_ROUTE_CHARS:
            return OTHER  # label values stay short whatever the path: a scrape's size stays bounded
        if route in self._known:
            return route
        if len(self._known) >= self._max_routes:
            return OTHER
        self._known.add(route)
        return route
