"""Neither listener depends on aiohttp: both are asyncio Protocols over llhttp."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_importing_the_proxy_imports_no_aiohttp() -> None:
    code = (
        "import sys\n"
        "import agent.proxy, agent.proxy.main, agent.proxy.listener, agent.proxy.exchange, agent.rules\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'asyncpg'))\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = run(code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_default_agent_runs_both_listeners_without_aiohttp() -> None:
    """Default config (admin listener on, the upstream http check, disk): started, probed through
    both listeners, and still no aiohttp (or asyncpg, which only a postgres check needs) loaded."""
    code = (
        "import asyncio, sys, urllib.request\n"
        "from agent.config import build_config\n"
        "from agent.server import Server\n"
        "async def main():\n"
        "    table = {'server': {'listen': '127.0.0.1:0'}, 'admin': {'listen': '127.0.0.1:0'}}\n"
        "    server = Server(build_config(table, {}, 'test'))\n"
        "    try:\n"
        "        await server.startup()\n"
        "        for name in ('main', 'admin'):\n"
        "            host, port = server.addresses[name]\n"
        "            url = f'http://{host}:{port}/health/live'\n"
        "            status = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).status)\n"
        "            print(name, status)\n"
        "    finally:\n"
        "        await server._close_runners()\n"
        "        await server.monitor.stop()\n"
        "asyncio.run(main())\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'asyncpg'))\n"
        "print(loaded)\n"
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-3:] == ["main 200", "admin 200", "[]"], result.stdout
