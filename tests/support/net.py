"""Small networking helpers for tests."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()  # never the same port twice in one test session


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free at the moment of the call.

    The port is found by binding port 0 and reading back what the kernel
    chose; the socket is closed before returning, so another process could
    in theory grab the port before the caller binds it. The kernel may hand the
    same port out again right after it was closed, so a port this process was
    already given is skipped (two listeners of one agent asked one after the other).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port that was not handed out already")
