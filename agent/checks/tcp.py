"""``tcp`` check: a TCP connection to host:port opens."""

from __future__ import annotations

import asyncio
import contextlib

from agent.checks.base import Check, CheckResult, passed


def make_tcp_check(host: str, port: int) -> Check:
    async def check() -> CheckResult:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        # The peer may reset a connection we close at once; connecting is what counted.
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return passed()

    return check
