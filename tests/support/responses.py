"""A strict HTTP/1.1 response reader for tests, and what the agent's answers carry.

Written here, not with httptools, so the tests do not share a parser with the code under test.
``parse_responses`` reads a whole connection's bytes into ``RawResponse`` values and says whether
each body ended where its framing said it would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# The default security headers (agent/config.py DEFAULT_SECURITY_HEADERS), names only.
SECURITY_HEADERS = (
    "x-content-type-options",
    "x-frame-options",
    "referrer-policy",
    "content-security-policy",
    "cross-origin-opener-policy",
    "cross-origin-resource-policy",
    "permissions-policy",
    "x-permitted-cross-domain-policies",
    "x-dns-prefetch-control",
)


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool = True  # False: the connection ended before the framing said the body ended
    chunked: bool = False

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for n, v in self.headers if n.lower() == lower]

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)


class IncompleteResponse(Exception):
    pass


def parse_head(data: bytes) -> tuple[int, str, str, list[tuple[str, str]], int] | None:
    """(status, reason, version, headers, bytes used), or None when the head is not complete."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        assert sep, f"malformed response header line {line!r}"
        assert name == name.strip() and name, f"bad header name {name!r}"
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return int(code), reason.decode("latin-1"), version.decode(), headers, end + 4


def parse_responses(data: bytes, *, eof: bool, head_for: list[bool] | None = None) -> list[RawResponse]:
    """Every response in ``data`` (a whole connection's bytes). ``head_for[i]`` marks responses
    to HEAD requests (no body whatever the headers say); 1xx responses are returned too."""
    responses: list[RawResponse] = []
    pos = 0
    final_index = 0
    while pos < len(data):
        parsed = parse_head(data[pos:])
        if parsed is None:
            raise IncompleteResponse(f"incomplete head: {data[pos : pos + 200]!r}")
        status, reason, version, headers, used = parsed
        pos += used
        lower = {n.lower(): v for n, v in headers}
        if 100 <= status < 200:
            responses.append(RawResponse(status, reason, version, headers, b""))
            continue
        is_head = bool(head_for and final_index < len(head_for) and head_for[final_index])
        final_index += 1
        if is_head or status in (204, 304):
            responses.append(RawResponse(status, reason, version, headers, b""))
            continue
        if "chunked" in lower.get("transfer-encoding", "").lower():
            body = bytearray()
            complete = False
            while True:
                line_end = data.find(b"\r\n", pos)
                if line_end < 0:
                    break
                size_text = data[pos:line_end].split(b";")[0]
                size = int(size_text, 16)
                if size == 0:
                    trailer_end = data.find(b"\r\n\r\n", line_end)
                    if trailer_end >= 0 or data[line_end : line_end + 4] == b"\r\n\r\n":
                        pos = (trailer_end if trailer_end >= 0 else line_end) + 4
                        complete = True
                    else:
                        pos = len(data)
                    break
                start = line_end + 2
                if start + size + 2 > len(data):
                    body += data[start : start + size]
                    pos = len(data)
                    break
                body += data[start : start + size]
                assert data[start + size : start + size + 2] == b"\r\n", "bad chunk framing"
                pos = start + size + 2
            responses.append(RawResponse(status, reason, version, headers, bytes(body), complete, chunked=True))
            if not complete:
                break
        elif "content-length" in lower:
            length = int(lower["content-length"])
            body_bytes = data[pos : pos + length]
            pos += len(body_bytes)
            responses.append(RawResponse(status, reason, version, headers, body_bytes, len(body_bytes) == length))
            if len(body_bytes) < length:
                break
        else:  # close-delimited
            responses.append(RawResponse(status, reason, version, headers, data[pos:], eof))
            pos = len(data)
    return responses
