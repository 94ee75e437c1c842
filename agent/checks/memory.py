"""``memory`` check: the container's working set against its limit (cgroup v2, v1), else the host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.checks.base import Check, CheckResult, failed, passed, warned

# A cgroup v1 "no limit" is a page-rounded 2**63-1; anything this large means unlimited.
_UNLIMITED = 1 << 60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _inactive_file(stat_path: Path, key: str) -> int:
    try:
        for line in stat_path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def container_memory(root: Path = Path("/sys/fs/cgroup")) -> tuple[int, int, str] | None:
    """(working set bytes, limit bytes, source) from the cgroup, or None when it has no limit.

    Working set = usage - inactive file cache, as the kubelet computes it for evictions.
    """
    if (root / "memory.max").exists():  # cgroup v2
        limit = _read_int(root / "memory.max")
        usage = _read_int(root / "memory.current")
        if limit and usage is not None and limit < _UNLIMITED:
            return usage - _inactive_file(root / "memory.stat", "inactive_file"), limit, "cgroup2"
        return None
    v1 = root / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    usage = _read_int(v1 / "memory.usage_in_bytes")
    if limit and usage is not None and limit < _UNLIMITED:
        return usage - _inactive_file(v1 / "memory.stat", "total_inactive_file"), limit, "cgroup1"
    return None


def make_memory_check(warn_used_ratio: float, fail_used_ratio: float, root: Path = Path("/sys/fs/cgroup")) -> Check:
    async def check() -> CheckResult:
        found = container_memory(root)
        if found is not None:
            used, limit, source = found
        else:
            import psutil  # only without a cgroup limit: not loaded for nothing (~1.4 MiB)

            vm = psutil.virtual_memory()
            used, limit, source = vm.total - vm.available, vm.total, "host"
        used_ratio = max(0.0, used / limit)
        observed: dict[str, Any] = {
            "used_ratio": round(used_ratio, 4),
            "used_bytes": used,
            "limit_bytes": limit,
            "source": source,
        }
        if used_ratio > fail_used_ratio:
            return failed(f"memory used {used_ratio:.1%} above {fail_used_ratio:.1%}", **observed)
        if used_ratio > warn_used_ratio:
            return warned(f"memory used {used_ratio:.1%} above {warn_used_ratio:.1%}", **observed)
        return passed(**observed)

    return check
