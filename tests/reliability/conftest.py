"""Fixtures for the reliability scenarios: fault proxies that are always stopped after the test,
and a guard that keeps pytest's temporary root reachable for the ``postgres`` OS user."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.postgres import keep_traversable


@pytest.fixture(scope="session")
def tmp_root_traversable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep o+x on ``/tmp/pytest-of-<user>`` until the end of the session.

    The test clusters (tests/support/postgres.py) run as the ``postgres`` OS user below it and
    open it with o+x once, at start. Every pytest session started on the machine meanwhile chmods
    it back to 0700; from then on ``pg_ctl status`` as ``postgres`` answers "no server running",
    so ``running_pg`` attempts a restart that fails, and ``PostgresServer.close()`` returns without
    stopping the server (an orphaned postmaster once pytest removes the directory). Request this
    before the first PostgreSQL fixture so that it is torn down after them.
    """
    with keep_traversable(tmp_path_factory.getbasetemp().parent):
        yield


@pytest.fixture
def fault_proxy() -> Iterator[Callable[[str, int], FaultProxy]]:
    """``fault_proxy(host, port)`` -> a started proxy to that target; all are stopped after the test."""
    proxies: list[FaultProxy] = []

    def make(host: str, port: int) -> FaultProxy:
        proxy = FaultProxy(host, port, name=f"faultproxy-{len(proxies)}").start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
