"""Waiting for a condition in tests: poll it until it holds or a deadline passes.

Both return whether it held, so the caller asserts with its own message::

    assert wait_until(lambda: proxy.active == 1, timeout=3), proxy.active
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` (sleeping the thread) until it is true or ``timeout`` seconds have passed.
    The predicate usually asks another process (a scrape, a query), hence the longer interval."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


async def async_wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` (yielding to the event loop) until it is true or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return predicate()
