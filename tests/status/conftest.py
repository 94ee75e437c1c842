from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from tests.status.support import default_results, make_config, make_monitor, wait_until
from tests.support.inprocess import in_process_agent


@pytest.fixture
def results():
    """What each check answers; a test changes an entry to change what the next run sees."""
    return default_results()


@pytest.fixture
async def make_agent(aiohttp_client, results):
    """``await make_agent(admin={"token": ...})`` -> an in-process agent whose checks have all run."""
    async with AsyncExitStack() as stack:

        async def make(**overrides):
            config = make_config(**overrides)
            monitor = make_monitor(config, results)
            agent = in_process_agent(config, aiohttp_client, monitor=monitor, start_monitor=True)
            running = await stack.enter_async_context(agent)
            await wait_until(lambda: monitor.snapshot.started and all(c.runs for c in monitor.snapshot.checks))
            return running

        yield make
