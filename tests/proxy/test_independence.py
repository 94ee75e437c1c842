"""The main listener depends on nothing of aiohttp: it is asyncio Protocols over llhttp."""

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


def test_main_listener_starts_without_aiohttps_c_parser_when_the_admin_listener_is_off() -> None:
    """AIOHTTP_NO_EXTENSIONS makes aiohttp use its Python parser: only the admin listener cares."""
    code = (
        "import asyncio, sys\n"
        "from agent.config import build_config\n"
        "from agent.server import Server, StartupError\n"
        "async def main(admin):\n"
        "    table = {'server': {'listen': '127.0.0.1:0'}, 'admin': {'enabled': admin, 'listen': '127.0.0.1:0'}}\n"
        "    server = Server(build_config(table, {}, 'test'))\n"
        "    try:\n"
        "        await server.startup()\n"
        "        return 'started'\n"
        "    except StartupError as exc:\n"
        "        return 'refused: ' + str(exc)\n"
        "    finally:\n"
        "        await server._close_runners()\n"
        "        await server.monitor.stop()\n"
        "print(asyncio.run(main(False)))\n"
        "print(asyncio.run(main(True)))\n"
    )
    result = run(code, AIOHTTP_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    without_admin, with_admin = result.stdout.strip().splitlines()[-2:]
    assert without_admin == "started"
    assert with_admin.startswith("refused: aiohttp's C HTTP parser is not in use")
