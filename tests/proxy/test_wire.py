"""agent.proxy.wire: status lines, Connection tokens, chunks, tokens."""

from __future__ import annotations

from agent.proxy.wire import HOP_BY_HOP, chunk, connection_tokens, is_token, status_line


def test_status_lines_use_the_standard_phrase() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(431) == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"
    assert status_line(200, b"Fine") == b"HTTP/1.1 200 Fine\r\n"
    assert status_line(200, b"bad\r\nInjected: 1") == b"HTTP/1.1 200 OK\r\n"


def test_connection_tokens_are_lowered_and_trimmed() -> None:
    assert connection_tokens([b"Keep-Alive, X-Foo", b" ,x-bar "]) == {b"keep-alive", b"x-foo", b"x-bar"}
    assert connection_tokens([b""]) == frozenset()


def test_chunk_framing() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n" and chunk(b"x" * 255).startswith(b"ff\r\n")


def test_tokens_and_hop_by_hop() -> None:
    assert is_token(b"abc-123") and not is_token(b"a b") and not is_token(b"")
    assert {b"connection", b"upgrade", b"transfer-encoding", b"te", b"trailer"} <= HOP_BY_HOP
