"""http, tcp, disk and memory checks against real sockets, files and the real filesystem."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.checks.base import Status, run_check
from agent.checks.disk import make_disk_check
from agent.checks.http import HttpProbe
from agent.checks.memory import container_memory, make_memory_check
from agent.checks.tcp import make_tcp_check
from agent.secrets import Redactor
from tests.support.net import free_port

REDACT = Redactor([])


async def test_http_check_follows_the_upstream(healthy_upstream):
    probe = HttpProbe(healthy_upstream.url + "/health", ((200, 399),))
    try:
        assert (await run_check(probe.check, 1.0, REDACT)).status is Status.PASS
        healthy_upstream.set_mode("failing")
        failing = await run_check(probe.check, 1.0, REDACT)
        assert failing.status is Status.FAIL and failing.message == "unexpected status 500"
        healthy_upstream.set_mode("slow", delay_s=3)
        slow = await run_check(probe.check, 0.3, REDACT)
        assert slow.status is Status.FAIL and "timed out" in slow.message
    finally:
        await probe.close()


async def test_http_check_gone_upstream():
    probe = HttpProbe(f"http://127.0.0.1:{free_port()}/health", ((200, 399),))
    try:
        result = await run_check(probe.check, 1.0, REDACT)
        assert result.status is Status.FAIL
        assert "Cannot connect" in result.message or "Connect" in result.message
    finally:
        await probe.close()


async def test_tcp_check():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert (await run_check(make_tcp_check("127.0.0.1", port), 1.0, REDACT)).status is Status.PASS
    assert (await run_check(make_tcp_check("127.0.0.1", free_port()), 1.0, REDACT)).status is Status.FAIL


async def test_disk_check_thresholds(tmp_path):
    assert (await run_check(make_disk_check(str(tmp_path), 0.0, 0.0), 1.0, REDACT)).status is Status.PASS
    assert (await run_check(make_disk_check(str(tmp_path), 1.0, 0.0), 1.0, REDACT)).status is Status.WARN
    failing = await run_check(make_disk_check(str(tmp_path), 1.0, 1.0), 1.0, REDACT)
    assert failing.status is Status.FAIL
    assert 0 < failing.observations["free_ratio"] < 1
    missing = await run_check(make_disk_check(str(tmp_path / "nope"), 0.1, 0.0), 1.0, REDACT)
    assert missing.status is Status.FAIL


def write_cgroup_v2(root: Path, *, limit: str, current: int, inactive_file: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "memory.max").write_text(limit + "\n")
    (root / "memory.current").write_text(f"{current}\n")
    (root / "memory.stat").write_text(f"anon 1\ninactive_file {inactive_file}\nactive_file 5\n")


def write_cgroup_v1(root: Path, *, limit: int, usage: int, inactive_file: int) -> None:
    v1 = root / "memory"
    v1.mkdir(parents=True, exist_ok=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (v1 / "memory.stat").write_text(f"cache 9\ntotal_inactive_file {inactive_file}\n")


def test_cgroup_v2_working_set(tmp_path):
    write_cgroup_v2(tmp_path, limit="1000", current=800, inactive_file=300)
    assert container_memory(tmp_path) == (500, 1000, "cgroup2")
    write_cgroup_v2(tmp_path, limit="max", current=800, inactive_file=300)
    assert container_memory(tmp_path) is None


def test_cgroup_v1_working_set(tmp_path):
    write_cgroup_v1(tmp_path, limit=2000, usage=1500, inactive_file=500)
    assert container_memory(tmp_path) == (1000, 2000, "cgroup1")
    write_cgroup_v1(tmp_path, limit=9223372036854771712, usage=1500, inactive_file=500)
    assert container_memory(tmp_path) is None


@pytest.mark.parametrize(("current", "expected"), [(500, Status.PASS), (950, Status.WARN), (999, Status.FAIL)])
async def test_memory_check_against_cgroup_files(tmp_path, current, expected):
    write_cgroup_v2(tmp_path, limit="1000", current=current, inactive_file=0)
    result = await run_check(make_memory_check(0.9, 0.98, root=tmp_path), 1.0, REDACT)
    assert result.status is expected
    assert result.observations["source"] == "cgroup2"


async def test_memory_check_host_fallback(tmp_path):
    result = await run_check(make_memory_check(0.999, 0.9999, root=tmp_path / "none"), 1.0, REDACT)
    assert result.observations["source"] == "host"
    assert result.status is Status.PASS


async def test_run_check_turns_exceptions_into_redacted_failures():
    async def leaky():
        raise RuntimeError("could not connect to postgresql://u:hunter2@db:5432/x password=hunter2")

    result = await run_check(leaky, 1.0, Redactor(["hunter2"]))
    assert result.status is Status.FAIL
    assert "hunter2" not in result.message
    assert result.message.startswith("RuntimeError:")
