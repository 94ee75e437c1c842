"""``tcp`` check: a TCP connection to host:port opens."""

from __future__ import annotations

import asyncio

from agent.checks.base import Check, CheckResult, passed


def make_tcp_check(host: str, port: int) -> Check:
    async def check() -> CheckResult:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass  # the peer may reset a connection we close at once; connecting is what counted
        return passed()

    return check
