"""W3C Trace Context: validate an incoming ``traceparent`` or make a new one."""

from __future__ import annotations

import os
import re

# Version 00 as the spec defines it; other versions are accepted if their prefix parses (spec §3.2.4).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def parse_traceparent(value: str | None) -> str | None:
    """The trace id of a valid ``traceparent``, else None (the whole header is then ignored)."""
    if not value or len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == "00" and rest:
        return None
    return trace_id


def new_traceparent() -> tuple[str, str]:
    """(traceparent, trace_id) for a new, unsampled trace."""
    trace_id = os.urandom(16).hex()
    return f"00-{trace_id}-{os.urandom(8).hex()}-00", trace_id
