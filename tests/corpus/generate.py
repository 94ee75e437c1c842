"""Generate the raw-request corpus in ``tests/corpus/requests/`` (deterministic; see README.md).

    python -m tests.corpus.generate          # (re)write every generated case, drop stale ones
    python -m tests.corpus.generate --check  # exit 1 if the committed files differ from this script

Expectations here are what the RFCs and reliability-anchors.md §2/§7 C ask for, not what the
agent happens to do; a case the agent gets wrong carries ``bug=`` and is replayed as a strict
xfail until the agent is fixed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from tests.corpus.format import CORPUS_DIR, GENERATED, NAME, Case, Expectation, load_cases, render_expect

HOST = b"Host: corpus.test\r\n"
CRLF = b"\r\n"

# Limits of the replay agent (tests/corpus/harness.py and agent/proxy/context.py ProxyLimits).
MAX_BODY = 16384
MAX_LINE = 8190  # request target, and name + value of one field
MAX_FIELDS = 128
MAX_HEAD = 64 * 1024

SMUGGLER = "defparam/smuggler configs/default.py"
RFC_FRAMING = "RFC 9112 §6.1, §6.3"
ANCHORS = "reliability-anchors.md"


def request(
    method: bytes = b"GET",
    target: bytes = b"/",
    fields: Iterable[bytes] = (),
    body: bytes = b"",
    *,
    version: bytes = b"HTTP/1.1",
    host: bytes | None = HOST,
) -> bytes:
    """A request head from raw field lines (each with its own line end) plus ``body`` as is."""
    return b"%s %s %s\r\n%s%s\r\n%s" % (method, target, version, host or b"", b"".join(fields), body)


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def refused(status: int = 400, *, upstream: str = "none", interim: int | None = None) -> dict[str, object]:
    return {"statuses": (status,), "close": True, "upstream": upstream, "interim": interim}


def served(
    *bodies: bytes,
    statuses: tuple[int, ...] | None = None,
    close: bool = False,
    count: int | None = None,
    upgrades: tuple[str, ...] = (),
) -> dict[str, object]:
    n = count if count is not None else max(len(bodies), 1)
    return {
        "statuses": statuses if statuses is not None else (200,) * n,
        "close": close,
        "upstream": str(n),
        "upstream_bodies": bodies,
        "upstream_upgrades": upgrades,
    }


class Builder:
    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}

    def add(
        self,
        name: str,
        payload: bytes,
        outcome: dict[str, object],
        *,
        source: str | tuple[str, ...] = (),
        note: str | tuple[str, ...] = (),
        bug: str = "",
        split: bool = True,
    ) -> None:
        if name in self.cases or not NAME.match(name):
            raise ValueError(f"duplicate or bad case name {name!r}")
        expect = Expectation(
            statuses=outcome["statuses"],  # type: ignore[arg-type]
            close=outcome["close"],  # type: ignore[arg-type]
            upstream=outcome["upstream"],  # type: ignore[arg-type]
            upstream_bodies=outcome.get("upstream_bodies", ()),  # type: ignore[arg-type]
            upstream_upgrades=outcome.get("upstream_upgrades", ()),  # type: ignore[arg-type]
            interim=outcome.get("interim"),  # type: ignore[arg-type]
            split=split,
            sources=(source,) if isinstance(source, str) else source,
            notes=(note,) if isinstance(note, str) else note,
            bug=bug,
            origin=GENERATED,
        )
        self.cases[name] = Case(name, payload, expect)


# --------------------------------------------------------------------------- CL.TE and TE.CL
def smuggling(b: Builder) -> None:
    src = ("RFC 9112 §6.1, §6.3", "reliability-anchors.md §7 C1")
    b.add(
        "smuggle-cl-te-basic",
        request(b"POST", b"/", [b"Content-Length: 6\r\n", b"Transfer-Encoding: chunked\r\n"], b"0\r\n\r\nG"),
        refused(),
        source=src,
    )
    b.add(
        "smuggle-te-cl-basic",
        request(b"POST", b"/", [b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n"], b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
        refused(),
        source=src,
    )
    inner = b"GET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
    body = b"0\r\n\r\n" + inner
    b.add(
        "smuggle-cl-te-full-request",
        request(b"POST", b"/", [b"Content-Length: %d\r\n" % len(body), b"Transfer-Encoding: chunked\r\n"], body),
        refused(),
        source=src,
        note="the request hidden after the last chunk must never become a request",
    )
    hidden = b"GPOST /smuggled HTTP/1.1\r\n" + HOST + b"Content-Length: 15\r\n\r\nx=1"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(hidden), hidden)
    b.add(
        "smuggle-te-cl-full-request",
        request(b"POST", b"/", [b"Content-Length: 4\r\n", b"Transfer-Encoding: chunked\r\n"], body),
        refused(),
        source=src,
    )
    b.add(
        "smuggle-cl-te-lowercase",
        request(b"POST", b"/", [b"content-length: 6\r\n", b"transfer-encoding: chunked\r\n"], b"0\r\n\r\nG"),
        refused(),
        source=src,
    )
    b.add(
        "smuggle-cl-te-mixed-case",
        request(b"POST", b"/", [b"cOnTeNt-LeNgTh: 6\r\n", b"TrAnSfEr-EnCoDiNg: ChUnKeD\r\n"], b"0\r\n\r\nG"),
        refused(),
        source=src,
    )
    b.add(
        "smuggle-cl-zero-te",
        request(b"POST", b"/", [b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n"], b"1\r\nG\r\n0\r\n\r\n"),
        refused(),
        source=src,
    )
    b.add(
        "smuggle-cl-te-get",
        request(b"GET", b"/", [b"Content-Length: 6\r\n", b"Transfer-Encoding: chunked\r\n"], b"0\r\n\r\nG"),
        refused(),
        source=src,
    )
    b.add(
        "smuggle-cl-te-http10",
        request(b"POST", b"/", [b"Content-Length: 6\r\n", b"Transfer-Encoding: chunked\r\n"], b"0\r\n\r\nG", version=b"HTTP/1.0"),
        refused(),
        source=src,
    )
    b.add(
        "smuggle-cl-te-identity",
        request(b"POST", b"/", [b"Content-Length: 5\r\n", b"Transfer-Encoding: identity\r\n"], b"hello"),
        refused(),
        source=src,
    )


# --------------------------------------------------------------------------- Transfer-Encoding forms
def transfer_encoding(b: Builder) -> None:
    src = ("RFC 9112 §6.1, §6.3", "reliability-anchors.md §2b, §7 C2")
    body = chunked(b"hello")

    def te(*values: bytes, version: bytes = b"HTTP/1.1", payload: bytes = body) -> bytes:
        return request(b"POST", b"/", [b"Transfer-Encoding: %s\r\n" % v for v in values], payload, version=version)

    b.add("te-chunked123", te(b"chunked123"), refused(), source=(*src, "CVE-2023-47641"))
    b.add("te-gzip", te(b"gzip", payload=b"abc"), refused(), source=src)
    b.add("te-gzip-chunked", te(b"gzip, chunked"), refused(), source=src, note="the agent forwards no codings but chunked")
    b.add("te-chunked-gzip", te(b"chunked, gzip"), refused(), source=src, note="final coding not chunked: RFC 9112 §6.3 400")
    b.add("te-chunked-chunked", te(b"chunked, chunked"), refused(), source=src, note="aiohttp's Python parser accepted this")
    b.add("te-twice", te(b"chunked", b"chunked"), refused(), source=src)
    b.add(
        "te-twice-differing-case",
        request(b"POST", b"/", [b"Transfer-Encoding: chunked\r\n", b"transfer-encoding: chunked\r\n"], body),
        refused(),
        source=src,
    )
    b.add("te-identity", te(b"identity", payload=b""), refused(), source=src)
    b.add("te-empty", te(b"", payload=b""), refused(), source=src)
    b.add("te-commas-and-whitespace", te(b",  \t ,", payload=b""), refused(), source=src, note="aiohttp test vector")
    b.add("te-trailing-comma", te(b"chunked,"), refused(), source=src)
    b.add("te-quoted", te(b'"chunked"'), refused(), source=src)
    b.add("te-chunked-with-parameter", te(b"chunked;q=1"), refused(), source=src)
    b.add("te-non-ascii-kelvin", te("chun\u212aed".encode()), refused(), source=(*src, "aiohttp 3.13.3 non-ASCII case folding"))
    b.add("te-on-http10", te(b"chunked", version=b"HTTP/1.0"), refused(), source=src, note="nginx answers 400 too")
    b.add(
        "te-uppercase-value",
        te(b"CHUNKED"),
        served(b"hello"),
        source=src,
        note="codings are case-insensitive: a valid chunked request",
    )
    b.add("te-trailing-space", te(b"chunked "), served(b"hello"), source=src, note="OWS after the value is valid")
    b.add(
        "te-two-leading-spaces", request(b"POST", b"/", [b"Transfer-Encoding:  chunked\r\n"], body), served(b"hello"), source=src
    )


def smuggler_mutations(b: Builder) -> None:
    """smuggler.py's default mutations, each with its TE.CL and CL.TE probe bodies."""
    gadgets: list[tuple[str, bytes]] = [
        ("nameprefix1", b" Transfer-Encoding: chunked"),
        ("tabprefix1", b"Transfer-Encoding:\tchunked"),
        ("tabprefix2", b"Transfer-Encoding\t:\tchunked"),
        ("space1", b"Transfer-Encoding : chunked"),
    ]
    for i in (0x01, 0x04, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1F, 0x20, 0x7F, 0xA0, 0xFF):
        c = bytes([i])
        gadgets += [
            (f"midspace-{i:02x}", b"Transfer-Encoding:" + c + b"chunked"),
            (f"postspace-{i:02x}", b"Transfer-Encoding" + c + b": chunked"),
            (f"prespace-{i:02x}", c + b"Transfer-Encoding: chunked"),
            (f"endspace-{i:02x}", b"Transfer-Encoding: chunked" + c),
            (f"xprespace-{i:02x}", b"X: X" + c + b"Transfer-Encoding: chunked"),
            (f"endspacex-{i:02x}", b"Transfer-Encoding: chunked" + c + b"X: X"),
            (f"rxprespace-{i:02x}", b"X: X\r" + c + b"Transfer-Encoding: chunked"),
            (f"xnprespace-{i:02x}", b"X: X" + c + b"\nTransfer-Encoding: chunked"),
            (f"endspacerx-{i:02x}", b"Transfer-Encoding: chunked\r" + c + b"X: X"),
            (f"endspacexn-{i:02x}", b"Transfer-Encoding: chunked" + c + b"\nX: X"),
        ]
    user_agent = (
        b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/78.0.3904.87 Safari/537.36\r\n"
    )
    content_type = b"Content-type: application/x-www-form-urlencoded; charset=UTF-8\r\n"
    for index, (name, gadget) in enumerate(gadgets):
        # Only "X: X<byte>Transfer-Encoding: chunked" with a byte allowed in a field value (HTAB,
        # SP, obs-text) is a clean request: one field X, no Transfer-Encoding, framed by CL.
        harmless = name.startswith("xprespace-") and name[-2:] in ("09", "20", "a0", "ff")
        probes = (
            ("tecl", 6, b"0\r\n\r\nX", served(b"0\r\n\r\nX")),
            ("clte", 4, b"1\r\nZ\r\n0\r\n\r\n", served(b"1\r\nZ", statuses=(200, 400), close=True)),
        )
        for probe, length, payload, ok in probes:
            head = (
                b"POST /?cb=%05d HTTP/1.1\r\n" % index
                + gadget
                + CRLF
                + HOST
                + user_agent
                + content_type
                + b"Content-Length: %d\r\n\r\n" % length
            )
            note = f"smuggler mutation {name}, {probe.upper()} probe (Content-Length {length})"
            if harmless and probe == "clte":
                note += "; the bytes after Content-Length are a junk request (400)"
            b.add(
                f"smuggler-{name}-{probe}",
                head + payload,
                ok if harmless else refused(),
                source=(SMUGGLER, "reliability-anchors.md §2b, §7 C2"),
                note=note,
            )


# --------------------------------------------------------------------------- Content-Length
def content_length(b: Builder) -> None:
    src = ("RFC 9110 §8.6", "RFC 9112 §6.3", "reliability-anchors.md §7 C3")

    def cl(*values: bytes, body: bytes = b"hello") -> bytes:
        return request(b"POST", b"/", [b"Content-Length: %s\r\n" % v for v in values], body)

    b.add("cl-duplicate-same", cl(b"5", b"5"), refused(), source=src)
    b.add("cl-duplicate-different", cl(b"5", b"6", body=b"hello!"), refused(), source=src)
    b.add(
        "cl-duplicate-differing-case",
        request(b"POST", b"/", [b"Content-Length: 5\r\n", b"content-length: 5\r\n"], b"hello"),
        refused(),
        source=src,
    )
    b.add("cl-list-same", cl(b"5, 5"), refused(), source=src)
    b.add("cl-list-different", cl(b"5, 6"), refused(), source=src)
    b.add("cl-trailing-comma", cl(b"5,"), refused(), source=src)
    b.add("cl-plus", cl(b"+5"), refused(), source=src)
    b.add("cl-minus", cl(b"-1", body=b""), refused(), source=src)
    b.add("cl-negative-zero", cl(b"-0", body=b""), refused(), source=src)
    b.add("cl-hex", cl(b"0x5"), refused(), source=(*src, "HTTP Garden"))
    b.add("cl-space-inside", cl(b"1 0", body=b"0123456789"), refused(), source=src)
    b.add("cl-decimal", cl(b"5.0"), refused(), source=src)
    b.add("cl-letters", cl(b"five"), refused(), source=src)
    b.add("cl-empty", cl(b""), refused(), source=src)
    b.add("cl-superscript-one", cl("\u00b9".encode(), body=b"x"), refused(), source=(*src, "aiohttp test vector"))
    b.add("cl-double-struck-one", cl("\U0001d7d9".encode(), body=b"x"), refused(), source=(*src, "aiohttp test vector"))
    b.add("cl-arabic-indic-five", cl("\u0665".encode()), refused(), source=src)
    b.add("cl-fullwidth-five", cl("\uff15".encode()), refused(), source=src)
    b.add("cl-overflow-64bit", cl(b"99999999999999999999999", body=b""), refused(), source=src)
    b.add(
        "cl-space-before-colon",
        request(b"POST", b"/", [b"Content-Length : 5\r\n"], b"hello"),
        refused(),
        source=(*src, "RFC 9112 §5.1"),
    )
    b.add("cl-leading-zeros", cl(b"0005"), served(b"hello"), source=src, note="1*DIGIT: leading zeros are valid")
    b.add("cl-tab-before-value", request(b"POST", b"/", [b"Content-Length:\t5\r\n"], b"hello"), served(b"hello"), source=src)
    b.add("cl-trailing-space", cl(b"5 "), served(b"hello"), source=src, note="OWS after the value is valid")
    b.add("cl-on-get", request(b"GET", b"/", [b"Content-Length: 5\r\n"], b"hello"), served(b"hello"), source=src)
    b.add(
        "cl-data-longer-than-length",
        cl(b"5", body=b"hello\x00junk\r\n\r\n"),
        served(b"hello", statuses=(200, 400), close=True),
        source=src,
        note="the bytes after the body are the next request: junk, answered 400 after the first",
    )


# --------------------------------------------------------------------------- chunked bodies
def chunking(b: Builder) -> None:
    src = ("RFC 9112 §7.1", "reliability-anchors.md §7 C4")
    te = [b"Transfer-Encoding: chunked\r\n"]

    def post(body: bytes) -> bytes:
        return request(b"POST", b"/", te, body)

    b.add("chunk-size-z", post(b"Z\r\nabc\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-underscore", post(b"0_2e\r\n\r\n"), refused(), source=(*src, "HTTP Garden: int() accepted 0_2e"))
    b.add("chunk-size-21-hex-digits", post(b"f" * 21 + b"\r\nabc"), refused(), source=(*src, "aiohttp parser divergence"))
    b.add("chunk-size-plus", post(b"+1\r\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-minus", post(b"-1\r\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-0x", post(b"0x1\r\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-space-inside", post(b"1 1\r\n" + b"x" * 17 + b"\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-leading-space", post(b" 1\r\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-empty", post(b"\r\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-unicode-digit", post("\u0661".encode() + b"\r\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-size-bare-lf", post(b"1\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-ext-lf", post(b"1;a\nb\r\nx\r\n0\r\n\r\n"), refused(), source=(*src, "CVE-2024-52304"))
    b.add("chunk-ext-cr-before-semicolon", post(b"1\r;a\r\nx\r\n0\r\n\r\n"), refused(), source=(*src, "HTTP Garden"))
    b.add("chunk-ext-nul", post(b"1;a\x00b\r\nx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-data-longer-than-size", post(b"1\r\nxx\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-data-shorter-than-size", post(b"3\r\nab\r\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-data-bare-lf", post(b"1\r\nx\n0\r\n\r\n"), refused(), source=src)
    b.add("chunk-data-no-crlf", post(b"1\r\nxy0\r\n\r\n"), refused(), source=src)
    b.add(
        "chunk-last-with-data",
        post(b"0\r\nabc\r\n\r\n"),
        refused(),
        source=src,
        note="after the last chunk comes the trailer section",
    )
    b.add("trailer-bad-field", post(b"0\r\nX Y\r\n\r\n"), refused(), source=(*src, "CVE-2025-53643"))
    b.add("trailer-obs-fold", post(b"0\r\nX-T: a\r\n b\r\n\r\n"), refused(), source=src)
    b.add("trailer-nul", post(b"0\r\nX-T: a\x00b\r\n\r\n"), refused(), source=src)
    b.add("trailer-bare-lf", post(b"0\r\nX-T: a\n\r\n"), refused(), source=src)
    trailers = b"".join(b"X-T%d: v\r\n" % i for i in range(200))
    b.add("trailer-200-fields", post(b"0\r\n" + trailers + b"\r\n"), refused(), source=(*src, "CVE-2026-22815"))
    b.add(
        "trailer-unterminated-128k",
        post(b"5\r\nhello\r\n0\r\nX-T: " + b"a" * (128 * 1024)),
        refused(upstream="incomplete"),
        source=(*src, "CVE-2026-22815", "GHSA-63hw-fmq6-xxg2"),
        note="a trailer line that never ends must hit the head limit, not be buffered until the body deadline",
    )
    b.add(
        "chunk-ext-valid",
        post(b"5;name=value\r\nhello\r\n0\r\n\r\n"),
        served(b"hello"),
        source=src,
        note="extensions are dropped when re-framed",
    )
    b.add("chunk-ext-quoted", post(b'5;a="b c"\r\nhello\r\n0;x=y\r\n\r\n'), served(b"hello"), source=src)
    b.add(
        "trailer-valid",
        post(b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"),
        served(b"hello"),
        source=src,
        note="trailers are not forwarded",
    )
    b.add(
        "trailer-framing-fields",
        post(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n"),
        refused(),
        source=(*src, "RFC 9110 §6.5.1"),
        note="framing fields in trailers must change nothing; llhttp refuses them (dropping them would be fine too)",
    )
    b.add("chunk-uppercase-hex-size", post(b"A\r\n0123456789\r\n0\r\n\r\n"), served(b"0123456789"), source=src)
    b.add("chunk-size-leading-zeros", post(b"0005\r\nhello\r\n0\r\n\r\n"), served(b"hello"), source=src)
    tiny = b"".join(b"1\r\n%s\r\n" % bytes([97 + i % 26]) for i in range(5000)) + b"0\r\n\r\n"
    b.add(
        "chunk-5000-tiny-chunks",
        post(tiny),
        served(bytes(97 + i % 26 for i in range(5000))),
        source=(*src, "CVE-2025-69229 (CPU on many chunks)"),
    )
    b.add("chunk-on-get", request(b"GET", b"/", te, chunked(b"hello")), served(b"hello"), source=src)


# --------------------------------------------------------------------------- header syntax
def header_syntax(b: Builder) -> None:
    src = ("RFC 9110 §5.5", "RFC 9112 §5", "reliability-anchors.md §7 C5")

    def get(*fields: bytes) -> bytes:
        return request(b"GET", b"/", fields)

    b.add("header-obs-fold-space", get(b"X-Fold: a\r\n b\r\n"), refused(), source=(*src, "RFC 9112 §5.2"))
    b.add("header-obs-fold-tab", get(b"X-Fold: a\r\n\tb\r\n"), refused(), source=(*src, "RFC 9112 §5.2"))
    b.add(
        "header-leading-space-first-field",
        b"GET / HTTP/1.1\r\n X-A: b\r\n" + HOST + b"\r\n",
        refused(),
        source=(*src, "RFC 9112 §2.2"),
    )
    b.add("header-bare-lf-everywhere", b"GET / HTTP/1.1\nHost: corpus.test\n\n", refused(), source=(*src, "RFC 9112 §2.2"))
    b.add("header-bare-lf-one-line", get(b"X-A: 1\nX-B: 2\r\n"), refused(), source=src)
    b.add("header-bare-cr-in-value", get(b"X-A: a\rb\r\n"), refused(), source=src)
    b.add("header-bare-cr-line-end", get(b"X-A: a\rX-B: b\r\n"), refused(), source=src)
    b.add(
        "header-cr-smuggled-te",
        request(b"POST", b"/", [b"X-Abc: \rxTransfer-Encoding: chunked\r\n"], chunked(b"hello")),
        refused(),
        source=(*src, "CVE-2023-37276 (llhttp)"),
    )
    b.add(
        "header-lf-smuggled-te",
        request(b"POST", b"/", [b"X-Abc: a\nTransfer-Encoding: chunked\r\n"], chunked(b"hello")),
        refused(),
        source=src,
    )
    for i in [*range(0x00, 0x20), 0x7F]:
        if i == 0x09:
            continue  # HTAB is allowed inside a value
        b.add(f"header-ctl-{i:02x}-in-value", get(b"X-A: a" + bytes([i]) + b"b\r\n"), refused(), source=src)
    for i in [*range(0x00, 0x21), 0x7F]:
        b.add(
            f"header-ctl-{i:02x}-in-name", get(b"X-" + bytes([i]) + b"A: b\r\n"), refused(), source=(*src, "RFC 9110 §5.1 token")
        )
    for i in (0x80, 0xA0, 0xC3, 0xFF):
        b.add(f"header-byte-{i:02x}-in-name", get(bytes([i]) + b"X-A: b\r\n"), refused(), source=(*src, "GHSA-gfw2-4jvh-wgfg"))
    for name, sep in (
        ("paren", b"("),
        ("at", b"@"),
        ("quote", b'"'),
        ("slash", b"/"),
        ("brace", b"{"),
        ("equals", b"="),
        ("comma", b","),
    ):
        b.add(
            f"header-separator-{name}-in-name", get(b"X-A" + sep + b": b\r\n"), refused(), source=(*src, "RFC 9110 §5.6.2 tchar")
        )
    b.add("header-space-before-colon", get(b"X-A : b\r\n"), refused(), source=(*src, "RFC 9112 §5.1 MUST 400"))
    b.add("header-tab-before-colon", get(b"X-A\t: b\r\n"), refused(), source=(*src, "RFC 9112 §5.1 MUST 400"))
    b.add("header-empty-name", get(b": b\r\n"), refused(), source=src)
    b.add("header-no-colon", get(b"X-NoColon\r\n"), refused(), source=src)
    b.add(
        "header-obs-text-in-value", get(b"X-A: caf\xe9 \x80\xff\r\n"), served(), source=src, note="obs-text is allowed in values"
    )
    b.add("header-utf8-in-value", get("X-A: caf\u00e9 \u2603\r\n".encode()), served(), source=src)
    b.add("header-invalid-utf8-in-value", get(b"X-A: \xc3\x28\r\n"), served(), source=(*src, "aiohttp #7715"))
    b.add("header-empty-value", get(b"X-Empty:\r\n"), served(), source=src)
    b.add("header-value-surrounding-whitespace", get(b"X-A: \t a b \t\r\n"), served(), source=src)
    b.add(
        "header-connection-names-content-length",
        request(b"POST", b"/", [b"Connection: Content-Length\r\n", b"Content-Length: 5\r\n"], b"hello"),
        served(b"hello"),
        source=("RFC 9110 §7.6.1", "reliability-anchors.md §7 C11"),
        note="naming a framing field in Connection must not lose the body's framing",
    )
    b.add(
        "header-upgrade-h2c",
        get(b"Connection: Upgrade, HTTP2-Settings\r\n", b"Upgrade: h2c\r\n", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
        served(close=True),
        source=("RFC 9110 §7.8", "reliability-anchors.md §7 C11"),
        note="forwarded without Upgrade; the connection ends with the response",
    )
    hidden = b"GET /smuggled HTTP/1.1\r\n" + HOST + b"\r\n"
    upgrade = [b"Connection: Upgrade\r\n", b"Upgrade: websocket\r\n", b"Sec-WebSocket-Version: 13\r\n"]
    upgrade_src = ("GHSA-mfx4-hv73-q22v", "reliability-anchors.md §2c, §7 C11")
    b.add(
        "header-upgrade-websocket-with-body",
        request(b"GET", b"/", [*upgrade, b"Content-Length: %d\r\n" % len(hidden)], hidden),
        refused(),
        source=upgrade_src,
        note="the body of an upgrade request is a body, never a second request: the agent refuses the request",
    )
    b.add(
        "header-upgrade-websocket-chunked-body",
        request(b"POST", b"/", [*upgrade, b"Transfer-Encoding: chunked\r\n"], chunked(hidden)),
        refused(),
        source=upgrade_src,
    )
    b.add(
        "header-upgrade-without-connection-with-body",
        request(b"POST", b"/", [b"Upgrade: websocket\r\n", b"Content-Length: 5\r\n"], b"hello"),
        served(b"hello"),
        source=upgrade_src,
        note="Upgrade not named in Connection: a plain request, Upgrade dropped as hop-by-hop",
    )


# --------------------------------------------------------------------------- Host
def host(b: Builder) -> None:
    src = ("RFC 9112 §3.2", "reliability-anchors.md §7 C5")
    b.add(
        "host-duplicate",
        b"GET / HTTP/1.1\r\nHost: corpus.test\r\nHost: other.test\r\n\r\n",
        refused(),
        source=(*src, "CVE-2026-34525"),
    )
    b.add("host-duplicate-same", b"GET / HTTP/1.1\r\nHost: corpus.test\r\nHost: corpus.test\r\n\r\n", refused(), source=src)
    b.add(
        "host-duplicate-differing-case", b"GET / HTTP/1.1\r\nHost: corpus.test\r\nhost: other.test\r\n\r\n", refused(), source=src
    )
    b.add("host-missing-http11", b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", refused(), source=src)
    b.add("host-ctl", b"GET / HTTP/1.1\r\nHost: corpus\x01.test\r\n\r\n", refused(), source=src)
    b.add("host-nul", b"GET / HTTP/1.1\r\nHost: corpus\x00.test\r\n\r\n", refused(), source=src)
    b.add("host-missing-http10", b"GET / HTTP/1.0\r\n\r\n", served(close=True), source=src, note="HTTP/1.0 needs no Host")
    b.add("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", served(), source=src, note="an empty Host is valid (no authority)")
    b.add("host-with-port", b"GET / HTTP/1.1\r\nHost: corpus.test:8080\r\n\r\n", served(), source=src)
    b.add("host-ipv6-literal", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", served(), source=src)
    for name, value in (
        ("space", b"corpus test"),
        ("slash", b"corpus.test/admin"),
        ("userinfo", b"user@corpus.test"),
        ("non-ascii", "b\u00fccher.test".encode()),
        ("bad-port", b"corpus.test:8o"),
    ):
        b.add(f"host-invalid-{name}", b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % value, refused(), source=src)


# --------------------------------------------------------------------------- head size
def head_size(b: Builder) -> None:
    src = ("reliability-anchors.md §7 C6", "RFC 6585 §5", "agent/proxy/settings.py ProxyLimits")
    too_large = refused(431)  # RFC 6585 §5: Request Header Fields Too Large
    too_long = refused(414)  # RFC 9110 §15.5.15: URI Too Long
    b.add(
        "head-field-at-line-limit",
        request(fields=[b"X: " + b"a" * (MAX_LINE - 1) + CRLF]),
        served(),
        source=src,
        note="name + value = 8190",
    )
    b.add("head-field-over-line-limit", request(fields=[b"X: " + b"a" * MAX_LINE + CRLF]), too_large, source=src)
    b.add("head-field-9kb", request(fields=[b"X: " + b"a" * 9000 + CRLF]), too_large, source=src)
    b.add("head-cookie-64kb", request(fields=[b"Cookie: " + b"a" * 65536 + CRLF]), too_large, source=src)
    b.add("head-target-at-limit", request(target=b"/" + b"a" * (MAX_LINE - 1)), served(), source=src)
    b.add("head-target-over-limit", request(target=b"/" + b"a" * MAX_LINE), too_long, source=src)
    b.add("head-target-9kb", request(target=b"/" + b"a" * 9000), too_long, source=src)
    fields = [b"X-%d: v\r\n" % i for i in range(MAX_FIELDS - 1)]
    b.add("head-128-fields", request(fields=fields), served(), source=src, note="Host + 127: at the limit")
    b.add("head-129-fields", request(fields=[*fields, b"X-last: v\r\n"]), too_large, source=src)
    b.add("head-200-fields", request(fields=[b"X-%d: v\r\n" % i for i in range(200)]), too_large, source=src)
    b.add("head-total-over-64kb", request(fields=[b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(9)]), too_large, source=src)
    for what, partial in (
        ("value", b"GET / HTTP/1.1\r\n" + HOST + b"X-A: " + b"a" * (2 * MAX_HEAD)),
        ("name", b"GET / HTTP/1.1\r\n" + HOST + b"X-" + b"a" * (2 * MAX_HEAD)),
    ):
        b.add(
            f"head-unterminated-{what}-128kb",
            partial,
            too_large,
            source=(*src, "GHSA-63hw-fmq6-xxg2", "CVE-2026-22815"),
            note="a field that never ends must be refused once the head passes its limit, not buffered until the deadline",
        )


# --------------------------------------------------------------------------- request line
def request_line(b: Builder) -> None:
    src = ("RFC 9112 §3", "reliability-anchors.md §2b, §7 C5")
    for name, version in (
        ("http-1.32", b"HTTP/1.32"),
        ("http-2.0", b"HTTP/2.0"),
        ("http-1.2", b"HTTP/1.2"),
        ("http-0.9", b"HTTP/0.9"),
        ("http-1.10", b"HTTP/1.10"),
        ("http-11", b"HTTP/11"),
        ("http-lowercase", b"http/1.1"),
        ("http-trailing-space", b"HTTP/1.1 "),
        ("http-unicode-digit", "HTTP/1.\u0661".encode()),
    ):
        b.add(f"line-{name}", request(version=version), refused(), source=(*src, "GHSA-8qpw-xqxj-h4r2"))
    b.add("line-no-version", b"GET /\r\n" + HOST + b"\r\n", refused(), source=src, note="HTTP/0.9 simple request")
    b.add(
        "line-absolute-form",
        request(target=b"http://evil.test/x", host=b"Host: evil.test\r\n"),
        refused(),
        source=(*src, "RFC 9112 §3.2.2"),
    )
    b.add("line-absolute-form-https", request(target=b"https://corpus.test/x"), refused(), source=src)
    b.add("line-authority-form-get", request(target=b"corpus.test:80"), refused(), source=src)
    b.add("line-asterisk-get", request(target=b"*"), refused(), source=src)
    b.add("line-connect", request(b"CONNECT", b"corpus.test:443"), refused(405), source=(*src, "RFC 9110 §9.3.6"))
    b.add("line-connect-origin-form", request(b"CONNECT", b"/"), refused(405), source=src)
    b.add("line-method-bad-char", request(b"G@T"), refused(), source=src)
    b.add("line-method-nul", request(b"GE\x00T"), refused(), source=src)
    b.add("line-method-empty", b" / HTTP/1.1\r\n" + HOST + b"\r\n", refused(), source=src)
    b.add("line-method-lowercase", request(b"get"), refused(), source=src, note="pinned: llhttp knows only registered methods")
    b.add(
        "line-method-longest-prefix",
        request(b"GETX"),
        refused(),
        source=(*src, "HTTP Garden: method taken as its longest valid prefix"),
    )
    b.add(
        "line-double-space",
        b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n",
        served(),
        source=src,
        note="RFC 9112 §3 lets a recipient split on whitespace; the agent re-serialises the line with single spaces",
    )
    b.add("line-tab-separator", b"GET\t/\tHTTP/1.1\r\n" + HOST + b"\r\n", refused(), source=src)
    b.add(
        "line-lf-in-request-line",
        b"GET /\n HTTP/1.1\r\n" + HOST + b"\r\n",
        refused(),
        source=(*src, "HTTP Garden: LF as separator"),
    )
    b.add("line-bare-lf-end", b"GET / HTTP/1.1\n" + HOST + b"\r\n", refused(), source=src)
    b.add("line-cr-in-target", request(target=b"/a\rb"), refused(), source=src)
    b.add("line-space-in-target", request(target=b"/a b"), refused(), source=src)
    b.add("line-nul-in-target", request(target=b"/a\x00b"), refused(), source=src)
    b.add("line-del-in-target", request(target=b"/a\x7fb"), refused(), source=src)
    b.add(
        "line-raw-utf8-in-target",
        request(target="/caf\u00e9".encode()),
        refused(),
        source=src,
        note="pinned: llhttp refuses raw non-ASCII",
    )
    b.add("line-h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", refused(), source=src)
    b.add("line-tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, refused(), source=src)
    b.add(
        "line-head-refused-no-content",
        b"HEAD / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        refused(),
        source=(*src, "RFC 9110 §9.3.2"),
    )
    b.add(
        "line-head-refused-mid-body-no-content",
        b"HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\n",
        refused(),
        source=(*src, "RFC 9110 §9.3.2"),
    )
    b.add(
        "body-head-over-limit-no-content",
        b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),
        refused(413),
        source=(*src, "RFC 9110 §9.3.2"),
    )
    b.add("line-options-asterisk", request(b"OPTIONS", b"*"), served(), source=(*src, "RFC 9112 §3.2.4"))
    b.add("line-empty-lines-before", b"\r\n\r\n" + request(), served(), source=(*src, "RFC 9112 §2.2 SHOULD ignore"))
    b.add(
        "line-percent-invalid-utf8", request(target=b"/caf%C3"), served(), source=src, note="forwarded byte for byte, never a 500"
    )
    b.add(
        "line-dot-segments",
        request(target=b"/a/../../etc/passwd"),
        served(),
        source=src,
        note="forwarded byte for byte; the app resolves it",
    )
    b.add(
        "line-fragment",
        request(target=b"/a#b"),
        served(),
        source=src,
        note="pinned: forwarded as is (RFC 9112 §3 SHOULD 400 or 301)",
    )


# --------------------------------------------------------------------------- pipelining
def pipelining(b: Builder) -> None:
    src = ("RFC 9112 §9.3.2", "reliability-anchors.md §7 C9", "GHSA-4fvr-rgm6-gqmc")

    def get(path: bytes) -> bytes:
        return request(b"GET", path)

    flood = b"".join(get(b"/pipeline/%04d" % i) for i in range(1000))
    b.add(
        "pipeline-flood-1000",
        flood,
        served(count=1000),
        source=src,
        note="1,000 GETs in one write: every one answered, in order, with the listener's queue bounded",
        split=False,  # the point is one large read
    )
    b.add("pipeline-64", b"".join(get(b"/pipeline/%02d" % i) for i in range(64)), served(count=64), source=src)
    b.add(
        "pipeline-get-then-bad",
        get(b"/first") + b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + get(b"/never"),
        served(statuses=(200, 400), close=True),
        source=src,
    )
    b.add(
        "pipeline-get-then-chunked-over-limit",
        get(b"/first") + request(b"POST", b"/second", [b"Transfer-Encoding: chunked\r\n"], b"8000\r\n" + b"a" * 20000),
        served(statuses=(200, 413), close=True),
        source=(*src, "found by fuzz/request_path.py (in-flight counter leak)"),
        note="the refusal of the second request comes after the first response, and nothing of it reaches the app",
        split=False,  # needs the second body parsed in the same read as the first request (pausing prevents it)
    )
    b.add("pipeline-bad-then-get", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + get(b"/never"), refused(), source=src)
    b.add(
        "pipeline-post-then-get",
        request(b"POST", b"/first", [b"Content-Length: 5\r\n"], b"hello") + get(b"/second"),
        served(b"hello", b""),
        source=src,
    )
    b.add(
        "pipeline-chunked-then-get",
        request(b"POST", b"/first", [b"Transfer-Encoding: chunked\r\n"], chunked(b"hello")) + get(b"/second"),
        served(b"hello", b""),
        source=src,
    )
    b.add(
        "pipeline-local-then-proxied",
        get(b"/health/live") + get(b"/after-health"),
        {"statuses": (200, 200), "close": False, "upstream": "1", "upstream_bodies": ()},
        source=src,
        note="the health answer comes from the agent, in order",
    )
    b.add(
        "pipeline-proxied-then-local-1000",
        get(b"/first") + get(b"/health/live") * 1000,
        {"statuses": (200,) * 1001, "close": False, "upstream": "1", "upstream_bodies": ()},
        source=src,
        note="1,000 health probes queued behind a proxied request: answered in order once it is",
        split=False,  # the point is one large read: every probe queued behind the first request
    )


# --------------------------------------------------------------------------- bodies and deadlines
def bodies(b: Builder) -> None:
    src = ("reliability-anchors.md §7 C7, C8",)
    b.add(
        "body-cl-at-limit",
        request(b"POST", b"/", [b"Content-Length: %d\r\n" % MAX_BODY], b"a" * MAX_BODY),
        served(count=1),
        source=src,
    )
    b.add(
        "body-cl-over-limit",
        request(b"POST", b"/", [b"Content-Length: %d\r\n" % (MAX_BODY + 1)], b"a" * 100),
        refused(413),
        source=src,
    )
    b.add(
        "body-cl-max-uint64",
        request(b"POST", b"/", [b"Content-Length: 18446744073709551615\r\n"], b"a"),
        refused(413),
        source=src,
    )
    b.add(
        "body-chunked-over-limit",
        request(b"POST", b"/", [b"Transfer-Encoding: chunked\r\n"], chunked(b"a" * 40000, b"b" * 40000)),
        refused(413, upstream="incomplete"),
        source=src,
    )
    b.add(
        "body-expect-100-over-limit",
        request(b"POST", b"/", [b"Content-Length: %d\r\n" % (MAX_BODY + 1), b"Expect: 100-continue\r\n"]),
        refused(413, interim=0),
        source=(*src, "RFC 9110 §10.1.1"),
        note="refused without a 100 Continue",
    )
    b.add(
        "timeout-head-incomplete",
        b"GET / HTTP/1.1\r\n" + HOST,
        {"statuses": (), "close": True, "upstream": "none"},
        source=(*src, "GHSA-5wr8-gcqf-gqf3"),
        note="cut at proxy.header_timeout_s (0.5 s in the replay agent) without an answer",
        split=False,  # needs the real deadline
    )
    b.add(
        "timeout-body-shorter-than-cl",
        request(b"POST", b"/", [b"Content-Length: 10\r\n"], b"hello"),
        refused(408, upstream="incomplete"),
        source=src,
        split=False,  # needs the real deadline
    )
    b.add(
        "timeout-chunk-shorter-than-size",
        request(b"POST", b"/", [b"Transfer-Encoding: chunked\r\n"], b"a\r\nhello"),
        refused(408, upstream="incomplete"),
        source=src,
        split=False,  # needs the real deadline
    )
    b.add(
        "timeout-last-chunk-without-end",
        request(b"POST", b"/", [b"Transfer-Encoding: chunked\r\n"], b"5\r\nhello\r\n0\r\n"),
        refused(408, upstream="incomplete"),
        source=src,
        split=False,  # needs the real deadline
    )


# --------------------------------------------------------------------------- controls
# --------------------------------------------------------------------------- Upgrade
def upgrades(b: Builder) -> None:
    """Upgrade requests the recording upstream does not switch for (it always answers 200).

    Whether a 101 tunnel carries the bytes is tests/proxy/test_websocket_clients.py's business; here
    the point is what happens around it: what reaches the app, and what the bytes after the head
    become when the app does not switch (RFC 9110 §7.8: the connection goes on as HTTP/1.1).
    """
    src = ("RFC 9110 §7.8", "RFC 6455 §4.1", "reliability-anchors.md §2c, §7 C11")
    websocket = [
        b"Connection: Upgrade\r\n",
        b"Upgrade: websocket\r\n",
        b"Sec-WebSocket-Version: 13\r\n",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    ]
    handshake = request(b"GET", b"/ws", websocket)
    b.add(
        "upgrade-websocket-not-switched",
        handshake,
        served(upgrades=("websocket",)),
        source=src,
        note="forwarded with Connection: Upgrade and Upgrade: websocket; the app answered 200, so the connection stays HTTP",
    )
    b.add(
        "upgrade-websocket-pipelined-request",
        handshake + request(b"GET", b"/after"),
        served(count=2, upgrades=("websocket", "-")),
        source=src,
        note="the request behind the handshake waits for the app's answer, then is a request like any other",
    )
    frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # "Hello", masked (RFC 6455 §5.7)
    b.add(
        "upgrade-websocket-frame-before-101",
        handshake + frame,
        {"statuses": (200, 400), "close": True, "upstream": "1", "upstream_upgrades": ("websocket",)},
        source=src,
        note="a client that does not wait for the 101: without a switch its frame is read as HTTP and refused, never relayed",
    )
    b.add(
        "upgrade-websocket-http10",
        request(b"GET", b"/ws", websocket, version=b"HTTP/1.0"),
        refused(),
        source=src,
        note="pinned: a WebSocket handshake is GET on HTTP/1.1 (RFC 6455 §4.1); the agent refuses, not forwards",
    )
    b.add(
        "upgrade-websocket-post",
        request(b"POST", b"/ws", websocket),
        refused(),
        source=src,
        note="pinned: a WebSocket handshake is GET (RFC 6455 §4.1)",
    )
    b.add(
        "upgrade-websocket-keep-alive-upgrade",
        request(b"GET", b"/ws", [b"Connection: keep-alive, Upgrade\r\n", *websocket[1:]]),
        served(upgrades=("websocket",)),
        source=src,
        note="Firefox's Connection value; the app gets Connection: Upgrade alone",
    )
    b.add(
        "upgrade-websocket-and-h2c",
        request(b"GET", b"/ws", [websocket[0], b"Upgrade: h2c, websocket\r\n", *websocket[2:]]),
        served(upgrades=("websocket",)),
        source=src,
        note="only the protocol in proxy.upgrades is offered to the app",
    )
    b.add(
        "upgrade-websocket-not-in-connection",
        request(b"GET", b"/ws", [b"Connection: keep-alive\r\n", *websocket[1:]]),
        served(),
        source=src,
        note="Upgrade not named in Connection: a plain request, Upgrade dropped as hop-by-hop",
    )
    b.add(
        "upgrade-websocket-local-path-pipelined",
        request(b"GET", b"/health/live", websocket) + request(b"GET", b"/after"),
        served(statuses=(200, 200), count=1),
        source=src,
        note="the agent answers /health/live itself (no switch), then the request behind it",
    )
    b.add(
        "upgrade-websocket-local-path-pipelined-many",
        request(b"GET", b"/health/live", websocket) * 300 + request(b"GET", b"/after"),
        served(statuses=(200,) * 301, count=1),
        source=src,
        note="300 handshakes the agent answers itself, in one write: each resumes HTTP in turn, without recursion",
    )
    b.add(
        "upgrade-h2c-local-path",
        request(b"GET", b"/health/live", [b"Connection: Upgrade\r\n", b"Upgrade: h2c\r\n"]),
        refused(200),
        source=src,
        note="like header-upgrade-h2c, answered by the agent itself: the connection ends with the response",
    )
    b.add(
        "upgrade-h2c-pipelined-request",
        request(
            b"GET",
            b"/",
            [b"Connection: Upgrade, HTTP2-Settings\r\n", b"Upgrade: h2c\r\n", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"],
        )
        + request(b"GET", b"/after"),
        served(close=True),
        source=src,
        note=(
            "pinned: a protocol the agent does not tunnel is forwarded without Upgrade and the connection ends with its response",
            "the request behind it is never forwarded",
        ),
    )


def controls(b: Builder) -> None:
    src = "control: a valid request that must reach the upstream"
    b.add("control-get", request(b"GET", b"/control?x=1&y=%20"), served(), source=src)
    b.add("control-head", request(b"HEAD", b"/control"), served(), source=src)
    b.add("control-delete", request(b"DELETE", b"/control/1"), served(), source=src)
    b.add("control-get-http10", request(b"GET", b"/control", version=b"HTTP/1.0"), served(close=True), source=src)
    b.add("control-connection-close", request(fields=[b"Connection: close\r\n"]), served(close=True), source=src)
    b.add(
        "control-post-content-length",
        request(b"POST", b"/control", [b"Content-Length: 11\r\n"], b"hello world"),
        served(b"hello world"),
        source=src,
    )
    b.add("control-post-empty", request(b"POST", b"/control", [b"Content-Length: 0\r\n"]), served(b""), source=src)
    b.add(
        "control-post-chunked",
        request(b"POST", b"/control", [b"Transfer-Encoding: chunked\r\n"], chunked(b"hello", b" world")),
        served(b"hello world"),
        source=src,
    )
    b.add("control-pipelined-pair", request(b"GET", b"/control/1") + request(b"GET", b"/control/2"), served(count=2), source=src)
    b.add(
        "control-expect-100-continue",
        request(b"POST", b"/control", [b"Content-Length: 5\r\n", b"Expect: 100-continue\r\n"], b"hello"),
        {**served(b"hello"), "interim": 1},
        source=(src, "RFC 9110 §10.1.1"),
    )
    b.add(
        "control-typical-browser",
        request(
            b"GET",
            b"/control",
            [
                b"User-Agent: Mozilla/5.0\r\n",
                b"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n",
                b"Accept-Language: en-GB,en;q=0.5\r\n",
                b"Accept-Encoding: gzip, deflate, br\r\n",
                b"Cookie: a=b; c=d\r\n",
                b"X-Request-ID: corpus-123\r\n",
                b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
            ],
        ),
        served(),
        source=src,
    )


def build() -> dict[str, Case]:
    b = Builder()
    for part in (
        smuggling,
        transfer_encoding,
        smuggler_mutations,
        content_length,
        chunking,
        header_syntax,
        host,
        head_size,
        request_line,
        pipelining,
        bodies,
        upgrades,
        controls,
    ):
        part(b)
    return b.cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    parser.add_argument("--dir", type=Path, default=CORPUS_DIR)
    args = parser.parse_args(argv)
    cases = build()
    directory: Path = args.dir
    problems = []
    existing = {c.name: c for c in load_cases(directory)} if directory.is_dir() else {}
    stale = sorted(n for n, c in existing.items() if c.expect.origin == GENERATED and n not in cases)
    for name, case in cases.items():
        http, expect = directory / f"{name}.http", directory / f"{name}.expect"
        text = render_expect(case.expect)
        if args.check:
            if (
                not http.is_file()
                or http.read_bytes() != case.payload
                or not expect.is_file()
                or expect.read_text(encoding="utf-8") != text
            ):
                problems.append(f"differs: {name}")
        else:
            directory.mkdir(parents=True, exist_ok=True)
            if not http.is_file() or http.read_bytes() != case.payload:
                http.write_bytes(case.payload)
            if not expect.is_file() or expect.read_text(encoding="utf-8") != text:
                expect.write_text(text, encoding="utf-8")
    for name in stale:
        if args.check:
            problems.append(f"stale generated case: {name}")
        else:
            (directory / f"{name}.http").unlink()
            (directory / f"{name}.expect").unlink()
    if problems:
        print("\n".join(problems[:50]), file=sys.stderr)
        print(f"{len(problems)} problem(s); run: python -m tests.corpus.generate", file=sys.stderr)
        return 1
    if not args.check:
        print(f"{len(cases)} generated cases in {directory}" + (f", {len(stale)} stale removed" if stale else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
