"""Builds a check from its config; the one place that knows every check type.

Each type's module is imported when a check of that type is built: the clients they use cost
memory for the agent's whole life (asyncpg ~3 MiB), so a configuration that has no such check
never loads them. The http check needs no client library (``agent.checks.http``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.checks.base import Check
from agent.config import (
    CheckConfig,
    DiskSettings,
    HttpSettings,
    MemorySettings,
    PostgresSettings,
    TcpSettings,
    parse_status_ranges,
)

Close = Callable[[], Awaitable[None]]


def make_check(config: CheckConfig) -> tuple[Check, Close | None]:
    """Return the check, and how to release what it holds (a connection, a client session)."""
    settings = config.settings
    if isinstance(settings, PostgresSettings):
        from agent.checks.postgres import PostgresProbe

        pg = PostgresProbe(settings, timeout_s=config.timeout_s)
        return pg.check, pg.close
    if isinstance(settings, HttpSettings):
        from agent.checks.http import HttpProbe
        from agent.tls import client_context

        tls = client_context(settings.tls) if settings.url.startswith("https://") else None
        http = HttpProbe(settings.url, parse_status_ranges(settings.expect_status), unix_socket=settings.unix_socket, tls=tls)
        return http.check, http.close
    if isinstance(settings, TcpSettings):
        from agent.checks.tcp import make_tcp_check

        return make_tcp_check(settings.host, settings.port), None
    if isinstance(settings, DiskSettings):
        from agent.checks.disk import make_disk_check

        return make_disk_check(settings.path, settings.warn_free_ratio, settings.fail_free_ratio), None
    if isinstance(settings, MemorySettings):
        from agent.checks.memory import make_memory_check

        return make_memory_check(settings.warn_used_ratio, settings.fail_used_ratio), None
    raise AssertionError(f"unknown check settings {type(settings).__name__}")
