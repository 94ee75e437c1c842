"""Small networking helpers for tests."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free at the moment of the call.

    The port is found by binding port 0 and reading back what the kernel
    chose; the socket is closed before returning, so another process could
    in theory grab the port before the caller binds it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
