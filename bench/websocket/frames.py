"""RFC 6455 framing, as much as the echo benchmark needs: the handshake key, frames, masking.

Pure functions over bytes, tested without sockets. Fragmented messages (FIN = 0) are not
produced; the echo server echoes each frame as it comes, whatever its FIN bit.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from functools import lru_cache

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def accept_value(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def new_key() -> bytes:
    return base64.b64encode(os.urandom(16))


def handshake_request(key: bytes, path: str = "/ws/echo", host: str = "127.0.0.1") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: bench-ws\r\n\r\n"
    ).encode()


@lru_cache(maxsize=256)
def _mask_int(key: bytes, size: int) -> int:
    return int.from_bytes((key * (size // 4 + 1))[:size], "little")


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` (§5.3); masking and unmasking are the same."""
    size = len(payload)
    if not size or key == b"\0\0\0\0":
        return payload
    return (int.from_bytes(payload, "little") ^ _mask_int(key, size)).to_bytes(size, "little")


def frame(payload: bytes, *, opcode: int = OP_BINARY, mask_key: bytes | None = None) -> bytes:
    """One final frame: unmasked (server to client) or masked with ``mask_key`` (client to server)."""
    size = len(payload)
    mask_bit = 0x80 if mask_key is not None else 0
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, mask_bit | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, mask_bit | 127, size)
    if mask_key is None:
        return head + payload
    return head + mask_key + apply_mask(payload, mask_key)


@dataclass(frozen=True, slots=True)
class Header:
    fin: bool
    opcode: int
    mask_key: bytes | None
    payload_bytes: int
    header_bytes: int


def parse_header(buf: bytes, pos: int = 0) -> Header | None:
    """The frame header at ``buf[pos:]``, or None while it is incomplete."""
    if len(buf) - pos < 2:
        return None
    b0, b1 = buf[pos], buf[pos + 1]
    size = b1 & 0x7F
    at = pos + 2
    if size == 126:
        if len(buf) - at < 2:
            return None
        size = int.from_bytes(buf[at : at + 2], "big")
        at += 2
    elif size == 127:
        if len(buf) - at < 8:
            return None
        size = int.from_bytes(buf[at : at + 8], "big")
        at += 8
    key = None
    if b1 & 0x80:
        if len(buf) - at < 4:
            return None
        key = bytes(buf[at : at + 4])
        at += 4
    return Header(bool(b0 & 0x80), b0 & 0x0F, key, size, at - pos)
