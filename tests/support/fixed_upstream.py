"""A fast upstream for load tests: every GET gets the same small 200, keep-alive, in its own process.

    python -m tests.support.fixed_upstream --port N

prints ``READY <port>`` once listening (``--port 0`` picks one) and serves until SIGTERM. It
answers one response per request head (``\\r\\n\\r\\n``), so only for requests without a body:
what a load test sends. An asyncio Protocol on uvloop, several times quicker than the aiohttp test
app, so under load the agent is what is measured. ``start_fixed_upstream()`` wraps the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator

from tests.support import REPO_ROOT

BODY = b'{"id":1,"name":"plan","status":"active"}'
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
READY_TIMEOUT_S = 10.0


class FixedAnswer(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        heads = data.count(b"\r\n\r\n")
        self.tail = data[data.rfind(b"\r\n\r\n") + 4 :] if heads else data
        if heads and self.transport is not None:
            self.transport.write(RESPONSE * heads)


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedAnswer, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(port))
    else:
        uvloop.run(_serve(port))


@contextlib.contextmanager
def start_fixed_upstream() -> Iterator[str]:
    """The upstream's URL while the process runs; stopped (SIGTERM, then SIGKILL) on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fixed_upstream", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()  # bounded: the child prints READY or exits
        if not line.startswith("READY "):
            raise RuntimeError(f"fixed upstream did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        try:
            process.wait(READY_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    main()
