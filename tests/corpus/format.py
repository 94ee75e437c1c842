"""Reading and writing corpus cases: ``NAME.http`` (the exact bytes) + ``NAME.expect`` (the outcome).

The ``.expect`` format is described in ``tests/corpus/README.md``; in short, ``key: value`` lines,
``#`` comments, keys ``status``, ``close``, ``upstream`` (required) and ``upstream-body``,
``upstream-upgrade``, ``interim``, ``split``, ``source``, ``note``, ``bug``, ``origin`` (optional).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from pathlib import Path

CORPUS_DIR = Path(__file__).parent / "requests"
GENERATED = "generate.py"
KNOWN_KEYS = {
    "status",
    "close",
    "upstream",
    "upstream-body",
    "upstream-upgrade",
    "interim",
    "split",
    "source",
    "note",
    "bug",
    "origin",
}
REPEATABLE = {"upstream-body", "source", "note"}
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class CorpusFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Expectation:
    statuses: tuple[int, ...]  # final responses in order; () = the agent never answers
    close: bool  # the agent must close the connection after them
    upstream: str  # "none" (not one byte), "incomplete" (bytes, no complete request), or a count >= 1
    upstream_bodies: tuple[bytes, ...] = ()
    # The Upgrade value each upstream request carries with "Connection: Upgrade" ("-": none);
    # empty: no upstream request may carry either field.
    upstream_upgrades: tuple[str, ...] = ()
    interim: int | None = None  # number of 1xx responses, when checked
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    split: bool = True  # also replayed in small pieces (False: the case is about one read, or a deadline)
    bug: str = ""  # a known agent bug: the case is replayed as a strict xfail
    origin: str = ""

    @property
    def upstream_requests(self) -> int:
        return int(self.upstream) if self.upstream.isdigit() else 0


@dataclass(frozen=True)
class Case:
    name: str
    payload: bytes
    expect: Expectation
    path: Path = field(default=Path())


def escape(data: bytes) -> str:
    """Bytes as printable ASCII with Python bytes-literal escapes (``\\r``, ``\\n``, ``\\xNN``, ``\\\\``)."""
    return codecs.escape_encode(data)[0].decode("ascii")


def unescape(text: str) -> bytes:
    return codecs.escape_decode(text.encode("ascii"))[0]


def parse_status(text: str) -> tuple[int, ...]:
    out: list[int] = []
    tokens = text.split()
    if tokens == ["-"]:
        return ()
    for token in tokens:
        count, star, status = token.partition("*")
        if not star:
            count, status = "1", token
        if not (count.isdigit() and status.isdigit() and 100 <= int(status) <= 599 and int(count) >= 1):
            raise CorpusFormatError(f"bad status token {token!r}")
        out.extend([int(status)] * int(count))
    if not out:
        raise CorpusFormatError("status is empty (use - for no response)")
    return tuple(out)


def format_status(statuses: tuple[int, ...]) -> str:
    if not statuses:
        return "-"
    parts: list[str] = []
    i = 0
    while i < len(statuses):
        j = i
        while j < len(statuses) and statuses[j] == statuses[i]:
            j += 1
        parts.append(str(statuses[i]) if j - i == 1 else f"{j - i}*{statuses[i]}")
        i = j
    return " ".join(parts)


def parse_expect(text: str) -> Expectation:
    values: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in KNOWN_KEYS:
            raise CorpusFormatError(f"line {number}: expected 'key: value' with a known key, got {line!r}")
        if key in values and key not in REPEATABLE:
            raise CorpusFormatError(f"line {number}: {key} given twice")
        values.setdefault(key, []).append(value.strip())
    for key in ("status", "close", "upstream"):
        if key not in values:
            raise CorpusFormatError(f"missing required key {key!r}")
    close = values["close"][0]
    if close not in ("yes", "no"):
        raise CorpusFormatError(f"close must be yes or no, got {close!r}")
    upstream = values["upstream"][0]
    if not (upstream in ("none", "incomplete") or (upstream.isdigit() and int(upstream) >= 1)):
        raise CorpusFormatError(f"upstream must be none, incomplete or a count >= 1, got {upstream!r}")
    interim = values.get("interim", [None])[0]
    if interim is not None and not interim.isdigit():
        raise CorpusFormatError(f"interim must be a count, got {interim!r}")
    split = values.get("split", ["yes"])[0]
    if split not in ("yes", "no"):
        raise CorpusFormatError(f"split must be yes or no, got {split!r}")
    bodies = tuple(unescape(v) for v in values.get("upstream-body", []))
    if bodies and len(bodies) != (int(upstream) if upstream.isdigit() else 0):
        raise CorpusFormatError("upstream-body must be given once per upstream request")
    upgrades = tuple(values.get("upstream-upgrade", [""])[0].split())
    if upgrades and len(upgrades) != (int(upstream) if upstream.isdigit() else 0):
        raise CorpusFormatError("upstream-upgrade must have one value (or -) per upstream request")
    return Expectation(
        statuses=parse_status(values["status"][0]),
        close=close == "yes",
        upstream=upstream,
        upstream_bodies=bodies,
        upstream_upgrades=upgrades,
        interim=int(interim) if interim is not None else None,
        split=split == "yes",
        sources=tuple(values.get("source", [])),
        notes=tuple(values.get("note", [])),
        bug=values.get("bug", [""])[0],
        origin=values.get("origin", [""])[0],
    )


def render_expect(expect: Expectation) -> str:
    lines = [
        f"status: {format_status(expect.statuses)}",
        f"close: {'yes' if expect.close else 'no'}",
        f"upstream: {expect.upstream}",
    ]
    lines += [f"upstream-body: {escape(body)}" for body in expect.upstream_bodies]
    if expect.upstream_upgrades:
        lines.append(f"upstream-upgrade: {' '.join(expect.upstream_upgrades)}")
    if expect.interim is not None:
        lines.append(f"interim: {expect.interim}")
    if not expect.split:
        lines.append("split: no")
    lines += [f"source: {s}" for s in expect.sources]
    lines += [f"note: {n}" for n in expect.notes]
    if expect.bug:
        lines.append(f"bug: {expect.bug}")
    if expect.origin:
        lines.append(f"origin: {expect.origin}")
    return "\n".join(lines) + "\n"


def load_cases(directory: Path = CORPUS_DIR) -> list[Case]:
    """Every ``NAME.http`` with its ``NAME.expect``, sorted by name; a lone file is an error."""
    https = {p.stem: p for p in directory.glob("*.http")}
    expects = {p.stem: p for p in directory.glob("*.expect")}
    lonely = sorted(set(https) ^ set(expects))
    if lonely:
        raise CorpusFormatError(f"cases without their .http or .expect file: {lonely}")
    cases = []
    for name in sorted(https):
        if not NAME.match(name):
            raise CorpusFormatError(f"bad case name {name!r} (lower-case letters, digits, . _ -)")
        try:
            expect = parse_expect(expects[name].read_text(encoding="utf-8"))
        except (CorpusFormatError, UnicodeDecodeError) as exc:
            raise CorpusFormatError(f"{expects[name].name}: {exc}") from None
        cases.append(Case(name, https[name].read_bytes(), expect, https[name]))
    return cases
