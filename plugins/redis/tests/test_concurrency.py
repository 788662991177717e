"""Thousands of runs checkpointing at once succeed on a few connections instead of failing.

Their store calls queue for the batcher's one connection (see ``_wire``); everything else the
store does waits for a pooled connection rather than opening more than ``max_connections``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis_test_kit import CountingConnection, counted

from durable import Workflow
from durable_redis import RedisStore


async def test_two_thousand_concurrent_workflows_all_succeed_on_a_small_pool(
    make_store: Callable[..., RedisStore],
) -> None:
    store, name = counted(make_store, "crowd", max_connections=8)  # far fewer than runs in flight
    wf = Workflow("crowd", db=store, default_retries=0)

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow(id="crowd-{n}")
    async def flow(n: int) -> int:
        return sum([await step(i) for i in range(3)])

    results = await asyncio.gather(*(flow(n) for n in range(2000)), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert results == [3] * 2000
    # Every connection the store opened: the batcher's own and pooled ones alike.
    assert 1 <= CountingConnection.opened[name] <= 8, CountingConnection.opened[name]
    await wf.close()
