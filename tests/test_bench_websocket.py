"""The benchmark's WebSocket echo pieces: RFC 6455 framing, and the client against the echo server."""

from __future__ import annotations

import asyncio
import os

import pytest

from bench.websocket import client
from bench.websocket.echo import EchoConnection
from bench.websocket.frames import OP_TEXT, accept_value, apply_mask, frame, parse_header


def test_accept_value_is_the_rfc_example() -> None:
    assert accept_value(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_frames_round_trip_at_every_length_encoding(size: int) -> None:
    payload, key = os.urandom(size), os.urandom(4)
    masked = frame(payload, opcode=OP_TEXT, mask_key=key)
    header = parse_header(masked)
    assert header is not None
    assert (header.fin, header.opcode, header.mask_key, header.payload_bytes) == (True, OP_TEXT, key, size)
    assert apply_mask(masked[header.header_bytes :], key) == payload
    assert parse_header(masked[: header.header_bytes - 1]) is None  # an incomplete header waits for more
    plain = frame(payload)
    assert plain[parse_header(plain).header_bytes :] == payload  # type: ignore[union-attr]


def test_masking_matches_the_bytewise_definition() -> None:
    payload, key = os.urandom(1001), b"\x01\x80\xfe\x37"
    assert apply_mask(payload, key) == bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def test_client_against_the_echo_server() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoConnection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        headers = await client.check("127.0.0.1", port, "/ws/echo", (64, 16 * 1024, 70_000), 5)
        assert headers["upgrade"].lower() == "websocket"
        result = await client.run("127.0.0.1", port, "/ws/echo", 4, 0.2, 16 * 1024)
        assert result["errors"] == 0 and result["requests"] > 4
        assert 0 < result["p50_ms"] <= result["p99_ms"]


async def test_a_plain_request_gets_200_and_close() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoConnection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"ok")
