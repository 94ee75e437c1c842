"""New TLS connections, one request each: ``python -m bench.tls.handshakes https://127.0.0.1:N/path``.

``--connections`` workers, each a closed loop: open a TCP connection, make a *full* TLS handshake
(no session is ever offered back, so the server can never resume one), send one
``GET path HTTP/1.1`` with ``Connection: close``, read the response to the server's close, check
it is a 200, close, start again, until ``--seconds`` have passed. A connection the server resumed
anyway, a status other than 200 and any connection or TLS error count as errors.

Why not ``wrk -H "Connection: close"``: wrk keeps its TLS session across reconnects, so every
handshake after the first is a resumption (HAProxy's ``show info`` reports 100 %
``SslFrontendSessionReuse_pct``): cheaper for both sides and not what a new client costs.

The client does not verify the certificate (it is the server's cost per handshake that is
measured; the benchmark's pre-check verifies the certificate on every TLS row). It offers ALPN
``http/1.1`` like a browser or curl. Prints one JSON line: connections completed, the window,
connections/s, p50/p99 of connect-to-close time, errors, and this process's CPU seconds in the
window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 5.0


class Window:
    """What all workers of one run share: the deadline and the tallies."""

    __slots__ = ("deadline", "errors", "latencies_s")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.errors = 0
        self.latencies_s: list[float] = []


class OneRequest(asyncio.Protocol):
    """One connection: write the request once the handshake is done, read to the server's close."""

    __slots__ = ("chunks", "done", "request", "transport")

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.chunks: list[bytes] = []
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # after the TLS handshake
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(b"".join(self.chunks))


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


async def worker(window: Window, host: str, port: int, request: bytes, context: ssl.SSLContext) -> None:
    loop = asyncio.get_running_loop()
    while time.perf_counter() < window.deadline:
        started = time.perf_counter()
        transport: asyncio.BaseTransport | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                transport, protocol = await loop.create_connection(
                    lambda: OneRequest(request), host, port, ssl=context, server_hostname=host
                )
                reused = transport.get_extra_info("ssl_object").session_reused
                response = await protocol.done  # the server closed after its answer
        except (OSError, ssl.SSLError, TimeoutError):
            window.errors += 1
            if transport is not None:
                transport.abort()  # type: ignore[attr-defined]
            continue
        if reused or not response.startswith(b"HTTP/1.1 200 "):
            window.errors += 1
        else:
            window.latencies_s.append(time.perf_counter() - started)


async def run(host: str, port: int, path: str, connections: int, seconds: float) -> dict[str, float | int]:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    context = client_context()
    cpu_start = time.process_time()
    started = time.perf_counter()
    window = Window(started + seconds)
    await asyncio.gather(*(worker(window, host, port, request, context) for _ in range(connections)))
    duration_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_start
    latencies = sorted(window.latencies_s)

    def pct_ms(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    done = len(latencies)
    return {
        "requests": done,
        "duration_s": duration_s,
        "rps": done / duration_s,
        "p50_ms": pct_ms(0.50),
        "p99_ms": pct_ms(0.99),
        "errors": window.errors,
        "client_cpu_s": cpu_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls.handshakes", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="https://127.0.0.1:PORT/PATH")
    parser.add_argument("--connections", type=int, default=32, help="concurrent workers (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        result = runner.run(run(url.hostname or "127.0.0.1", url.port or 443, url.path or "/", args.connections, args.seconds))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
