"""``disk`` check: free space at a path, as a ratio of the filesystem's size."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from agent.checks.base import Check, CheckResult, failed, passed, warned


def make_disk_check(path: str, warn_free_ratio: float, fail_free_ratio: float) -> Check:
    pending: list[asyncio.Future[Any]] = []

    async def check() -> CheckResult:
        # statvfs can block on a dead network filesystem: keep it off the event loop, and never
        # start a second thread while the first is still stuck (threads cannot be cancelled).
        if pending and not pending[0].done():
            return failed(f"statvfs({path!r}) still blocked from an earlier run")
        pending[:] = [asyncio.ensure_future(asyncio.to_thread(os.statvfs, path))]
        st = await asyncio.shield(pending[0])
        # As psutil.disk_usage computes them (without importing psutil, ~1.4 MiB): free is what an
        # unprivileged process may still use, total the whole filesystem.
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        free_ratio = free / total if total else 0.0
        observed = {"free_ratio": round(free_ratio, 4), "free_bytes": free, "total_bytes": total}
        if free_ratio < fail_free_ratio:
            return failed(f"free space {free_ratio:.1%} below {fail_free_ratio:.1%}", **observed)
        if free_ratio < warn_free_ratio:
            return warned(f"free space {free_ratio:.1%} below {warn_free_ratio:.1%}", **observed)
        return passed(**observed)

    return check
