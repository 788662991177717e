"""Events and streams through the public API on Redis (issue 18): a run on one Workflow's worker
writes, a reader on another Workflow (another store object over the same prefix) is pushed each
item and ends when the stream closes, ``get_event`` waits for a first value, and ``prune`` removes
them with the run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
from redis_test_kit import StoreMaker

from durable import Workflow
from durable_redis import RedisStore


def gated_app(store: RedisStore) -> tuple[Workflow, Any]:
    wf = Workflow("streams", db=store)

    @wf.workflow(id="gated-{n}")
    async def gated(n: int) -> int:
        for i in range(n):
            await wf.set_event("progress", {"done": i})
            await wf.write_stream("log", i)
            await wf.signal("go")  # one delivery per item: the test paces the writer
        await wf.close_stream("log")
        return n

    return wf, gated


async def test_a_reader_on_another_store_object_is_pushed_each_item_and_prune_removes_them(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store()
    wf, gated = gated_app(store)
    reader_wf, _ = gated_app(make_store(prefix=store.prefix))
    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.run_worker(stop=stop, poll_interval=0.05))
    received: list[tuple[int, Any, float]] = []
    try:
        run_id = await gated.start(n=3)
        assert await reader_wf.get_event(run_id, "progress", timeout=10) == {"done": 0}

        async def read() -> None:
            async for offset, value in reader_wf.read_stream(run_id, "log"):
                received.append((offset, value, time.monotonic()))

        reader = asyncio.ensure_future(read())
        await asyncio.wait_for(_until(lambda: len(received) > 0), 10)
        for n in (1, 2):
            sent = time.monotonic()
            await reader_wf.complete(run_id, "go", delivery_id=str(n))
            await asyncio.wait_for(_until(lambda count=n + 1: len(received) >= count), 10)
            # The worker polls every 0.05 s for the woken run; the reader is pushed, its net is 5 s.
            assert received[-1][2] - sent < 2.0, "pushed over pub/sub, not found by the 5 s safety net"
        await reader_wf.complete(run_id, "go", delivery_id="3")
        await asyncio.wait_for(reader, 10)  # the stream was closed
        assert await wf.wait_for(run_id, timeout=10) == 3
    finally:
        stop.set()
        await worker
    assert [(offset, value) for offset, value, _ in received] == [(0, 0), (1, 1), (2, 2)]
    assert await reader_wf.get_events(run_id) == {"progress": {"done": 2}}

    assert await wf.prune(0) == 1
    assert not any(admin.exists(key) for key in store.keys.output_keys(run_id))
    await wf.close()
    await reader_wf.close()


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)
