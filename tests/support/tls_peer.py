"""A TLS client's view of a listener: what one handshake negotiated, or how the server refused it.

``handshake(port, context)`` completes a handshake and reports the version, the ALPN protocol and
the served certificate. ``refusal(port, context)`` expects the server to refuse: it sends a request
and returns the error that ended the connection (with TLS 1.3 the client's half of the handshake
can finish before the server has checked the client certificate, so the refusal shows on the
first read).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from cryptography import x509

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Handshake:
    version: str | None
    alpn: str | None
    leaf: x509.Certificate

    @property
    def serial(self) -> int:
        return self.leaf.serial_number


def handshake(port: int, context: ssl.SSLContext, *, server_name: str = "localhost") -> Handshake:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return Handshake(tls.version(), tls.selected_alpn_protocol(), x509.load_der_x509_certificate(der))


def served_serial(port: int, context: ssl.SSLContext) -> int:
    return handshake(port, context).serial


def refusal(port: int, context: ssl.SSLContext, *, server_name: str = "localhost") -> OSError:
    """The error a refused client sees; fails when the server answers the request instead."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                tls.sendall(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
                data = tls.recv(1024)
        except OSError as exc:  # ssl.SSLError, a reset, or the EOF of an unwrapped close
            return exc
    if not data:
        return ConnectionAbortedError("closed without an answer")
    raise AssertionError(f"the server answered a client it should have refused: {data[:200]!r}")


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a plain TCP connection; everything the server sent back before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)
