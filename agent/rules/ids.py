"""Request ids and W3C Trace Context: resolve what a request brought, make what it lacks.

A request id is a header value of printable ASCII (``0x20``-``0x7e``) that the configured
pattern fully matches; the pattern is applied to the raw bytes, so ``\\d`` means ``[0-9]`` and a
non-ASCII id is always replaced, whichever listener reads it (the admin listener's handlers see
``str`` values: they are encoded first and go through the same bytes rule).

``traceparent`` follows Trace Context Level 1 §3.2: version ``ff`` and all-zero ids are invalid,
version ``00`` has exactly four fields, later versions are accepted when their prefix parses.
A ``tracestate`` only travels with the valid ``traceparent`` it belongs to.
"""

from __future__ import annotations

import os
import re
from typing import Final

DEFAULT_PATTERN: Final = r"^[A-Za-z0-9._:+=/@-]{1,128}$"

_PRINTABLE: Final = re.compile(rb"[\x20-\x7e]*")
_TRACEPARENT: Final = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE: Final = b"0" * 32
_ZERO_PARENT: Final = b"0" * 16
MAX_TRACEPARENT_BYTES: Final = 512


class Ids:
    """What a request carries from the agent on: its id, its ``traceparent`` and trace id.

    A plain class, not a NamedTuple: compiled, it is built without a Python-level ``__new__``
    (one per request on both listeners).
    """

    __slots__ = ("flags", "parent_id", "request_id", "span_id", "trace_id", "traceparent", "tracestate")

    def __init__(
        self,
        request_id: str,
        traceparent: str,  # what goes to the app
        trace_id: str,
        tracestate: bytes | None,
        span_id: str = "",  # a fresh span id: the agent's own span, when it traces
        parent_id: str | None = None,  # the valid incoming traceparent's parent id
        flags: str | None = None,  # and its flags
    ) -> None:
        self.request_id = request_id
        self.traceparent = traceparent
        self.trace_id = trace_id
        self.tracestate = tracestate
        self.span_id = span_id
        self.parent_id = parent_id
        self.flags = flags

    def with_traceparent(self, traceparent: str) -> Ids:
        """The same ids with another ``traceparent`` for the app."""
        return Ids(self.request_id, traceparent, self.trace_id, self.tracestate, self.span_id, self.parent_id, self.flags)

    def fields(self) -> tuple[str, str, str, bytes | None, str, str | None, str | None]:
        return (self.request_id, self.traceparent, self.trace_id, self.tracestate, self.span_id, self.parent_id, self.flags)

    def __repr__(self) -> str:
        names = ("request_id", "traceparent", "trace_id", "tracestate", "span_id", "parent_id", "flags")
        return "Ids(" + ", ".join(f"{name}={value!r}" for name, value in zip(names, self.fields(), strict=True)) + ")"


def compile_request_id_pattern(pattern: str) -> re.Pattern[bytes]:
    """The configured pattern as a bytes regex; ``re.error`` or ``UnicodeEncodeError`` when it is unusable."""
    return re.compile(pattern.encode("ascii"))


class RequestIdRule:
    """Keeps an incoming id that is printable ASCII and fully matches ``pattern``."""

    __slots__ = ("_match", "header", "header_lower")

    def __init__(self, header: str, pattern: str) -> None:
        self.header = header
        self.header_lower = header.lower()
        self._match = compile_request_id_pattern(pattern).fullmatch

    def accepts(self, value: bytes) -> bool:
        return self._match(value) is not None and _PRINTABLE.fullmatch(value) is not None

    def accepts_text(self, value: str) -> bool:
        """The same rule for a decoded value (the admin listener): non-ASCII is never an id."""
        return value.isascii() and self.accepts(value.encode("ascii"))


def parse_traceparent(value: bytes | None) -> str | None:
    """The trace id of a valid ``traceparent``, else None (the whole header is then ignored)."""
    parts = traceparent_parts(value)
    return None if parts is None else parts[0]


def traceparent_parts(value: bytes | None) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid ``traceparent``, else None."""
    if not value or len(value) > MAX_TRACEPARENT_BYTES:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
        return None
    if version == b"00" and rest:
        return None
    return trace_id.decode("ascii"), parent_id.decode("ascii"), flags.decode("ascii")


def parse_traceparent_text(value: str | None) -> str | None:
    """:func:`parse_traceparent` for a decoded value (the admin listener)."""
    if value is None or not value.isascii():
        return None
    return parse_traceparent(value.encode("ascii"))


class _Entropy:
    """``os.urandom`` read 4 KiB at a time, kept as hex text: one syscall per ~100 requests
    instead of one each, and no per-request conversion.

    Reset after ``fork`` so two processes never hand out the same bytes.
    """

    __slots__ = ("buffer", "position")

    def __init__(self) -> None:
        self.buffer = ""
        self.position = 0

    def take_hex(self, n: int) -> str:
        """``n`` random hex digits (``n`` even)."""
        start = self.position
        if start + n > len(self.buffer):
            self.buffer = os.urandom(4096).hex()
            start = 0
        self.position = start + n
        return self.buffer[start : start + n]

    def reset(self) -> None:
        self.buffer = ""
        self.position = 0


_entropy: Final = _Entropy()
os.register_at_fork(after_in_child=_entropy.reset)

# RFC 4122 §4.4: the variant's two high bits are 10, so the digit after the third dash is 8-b
# with the random digit's two low bits kept.
_VARIANT: Final = {digit: "89ab"[value & 3] for value, digit in enumerate("0123456789abcdef")}


def new_ids() -> tuple[str, str, str]:
    """(a UUID4 string, a new unsampled traceparent, its trace id), all from fresh random bytes."""
    h = _entropy.take_hex(80)
    trace_id = h[32:64]
    request_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"  # version 4
    return request_id, f"00-{trace_id}-{h[64:80]}-00", trace_id


def new_id() -> str:
    """A UUID4 string (error ids, ids for requests that could not be parsed)."""
    return new_ids()[0]


def resolve_ids(rule: RequestIdRule, request_id: bytes | None, traceparent: bytes | None, tracestate: bytes | None) -> Ids:
    """The ids a request goes on with: valid incoming values kept, the rest made new."""
    new_request_id, new_traceparent, trace_id = new_ids()
    span_id = new_traceparent[36:52]
    if request_id is not None and rule.accepts(request_id):
        new_request_id = request_id.decode("ascii")
    incoming = traceparent_parts(traceparent)
    if incoming is None:
        return Ids(new_request_id, new_traceparent, trace_id, None, span_id)
    incoming_trace_id, parent_id, flags = incoming
    return Ids(new_request_id, traceparent.decode("ascii"), incoming_trace_id, tracestate, span_id, parent_id, flags)  # type: ignore[union-attr]


def resolve_ids_text(rule: RequestIdRule, request_id: str | None, traceparent: str | None, tracestate: str | None) -> Ids:
    """:func:`resolve_ids` for decoded header values (the admin listener): encoded, then the same rule."""
    return resolve_ids(rule, _ascii(request_id), _ascii(traceparent), _ascii(tracestate))


def _ascii(value: str | None) -> bytes | None:
    """Non-ASCII values are never valid ids, trace context or state: treated as absent."""
    return value.encode("ascii") if value is not None and value.isascii() else None
