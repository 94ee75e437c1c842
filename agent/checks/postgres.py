"""``postgres`` check over one dedicated, long-lived asyncpg connection.

Never the app's pool and never a connection per probe (a probe storm must not become a
connection storm). asyncpg's defaults wait 60 s to connect and forever for a query; here every
step is bounded by the check's timeout, and any failure ``terminate()``s the connection instead
of a graceful close that a frozen server would never answer. ``terminate()`` also cancels the
CancelRequest task asyncpg starts for an interrupted query, so nothing is left behind. At most two
connections exist at once: the probe's, and asyncpg's short-lived cancel connection.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from agent.checks.base import CheckResult, failed, passed, warned
from agent.config import PostgresSettings

# One round trip for everything the check reports.
PROBE_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections_used,
       current_setting('max_connections')::int AS max_connections,
       current_setting('server_version') AS server_version
"""

# Errors that mean "this connection is gone", where one fresh connection is worth a try.
_STALE = (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError, ConnectionError)


class PostgresProbe:
    def __init__(self, settings: PostgresSettings, *, timeout_s: float) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.settings.dsn.reveal(),
            timeout=self.timeout_s,
            statement_cache_size=0,
            server_settings={"application_name": "sidecar-agent", "statement_timeout": str(int(self.timeout_s * 1000))},
        )

    async def _query(self) -> asyncpg.Record:
        fresh = self._conn is None or self._conn.is_closed()
        if fresh:
            self._drop()
            self._conn = await self._connect()
        assert self._conn is not None
        try:
            return await self._conn.fetchrow(PROBE_SQL)
        except _STALE:
            if fresh:
                raise
            # The server restarted or dropped an idle connection: one new connection, same deadline.
            self._drop()
            self._conn = await self._connect()
            return await self._conn.fetchrow(PROBE_SQL)

    async def check(self) -> CheckResult:
        started = time.perf_counter()
        try:
            row = await self._query()
        except BaseException:
            self._drop()  # timeout, cancellation or error: never reuse a connection in an unknown state
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        used, maximum = int(row["connections_used"]), int(row["max_connections"])
        observed = {
            "server_version": row["server_version"].split()[0],
            "in_recovery": bool(row["in_recovery"]),
            "connections_used": used,
            "max_connections": maximum,
            "connections_used_ratio": round(used / maximum, 4) if maximum else 0.0,
            "latency_ms": round(latency_ms, 3),
        }
        if row["in_recovery"] and self.settings.expect_primary:
            return failed("server is in recovery (a standby) but expect_primary = true", **observed)
        if observed["connections_used_ratio"] > self.settings.warn_connections_ratio:
            return warned(f"{used} of {maximum} connections in use", **observed)
        if latency_ms > self.settings.warn_latency_ms:
            return warned(f"slow: {latency_ms:.0f} ms", **observed)
        return passed(**observed)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def close(self) -> None:
        """Close politely within a bound, then terminate: a frozen server never answers a close."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(timeout=1.0), timeout=1.5)
        except asyncio.CancelledError:
            conn.terminate()
            raise
        except Exception:
            conn.terminate()
