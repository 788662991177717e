"""A run's queue, priority, partition and not-before time are shown where its status is: the
listing rows and timeline that ``durable runs list/show --json`` and the viewer print (issue 17)."""

from __future__ import annotations

import time

from durable import Workflow
from durable._inspect import load_timeline, summarize
from durable_memory import InMemoryStore


async def test_a_queued_run_shows_its_queue_entry_in_listings_and_its_timeline() -> None:
    store = InMemoryStore()
    wf = Workflow("shop", db=store)
    wf.queue("llm", concurrency=2)

    @wf.workflow(id="summarise-{doc}", queue="llm")
    async def summarise(doc: str) -> str:
        return doc

    @wf.workflow(id="plain-{doc}")
    async def plain(doc: str) -> str:
        return doc

    before = time.time()
    await summarise.options(priority=3, delay=60, partition_key="tenant-7").start(doc="7")
    await plain.start(doc="8")
    rows = {row.run_id: row.to_json() for row in await summarize(store, await wf.list_runs())}
    queue = rows["summarise-7"]["queue"]
    assert queue["queue"] == "llm" and queue["priority"] == 3 and queue["partition_key"] == "tenant-7"
    assert before + 59 < queue["not_before"] < time.time() + 61
    assert queue["started_at"] is None
    assert rows["plain-8"]["queue"] is None
    timeline = (await load_timeline(store, "summarise-7")).to_json()
    assert timeline["queue"] == queue
    await wf.close()
