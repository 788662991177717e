"""Thousands of runs checkpointing at once wait for a pooled connection instead of failing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from durable import Workflow
from durable_redis import RedisStore


async def test_two_thousand_concurrent_workflows_all_succeed_on_a_small_pool(
    make_store: Callable[..., RedisStore],
) -> None:
    store = make_store(max_connections=8)  # far fewer connections than runs in flight
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
    pool = store.client.connection_pool
    opened = len(pool._available_connections) + len(pool._in_use_connections)  # type: ignore[attr-defined]
    assert 1 <= opened <= 8
    await wf.close()
