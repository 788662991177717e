"""Do queue claims stay flat as finished queued runs pile up? (issue 17: "due-run and queue
lookups go through indexes: cost flat with history")

    python benchmarks/flat_queue_history.py [--stores memory,sqlite,postgres,redis]
                                            [--finished 100000] [--rounds 15] [--ops 50] [--json FILE]

A queued run keeps its queue entry until it is deleted, so a queue that has served many runs
holds many finished entries. For every store that declares ``Capability.QUEUES``, this times on
two fresh stores, one with no other run and one with ``--finished`` runs that went through queue
``q`` and completed, and prints the ratio (the goal is below 1.5):

- *claim*: ``enqueue_run`` of one run on ``q``, ``claim_queued`` of it with a concurrency limit
  (so the claim counts the queue's running runs), and its completion (``update_run(COMPLETED,
  release=True)``): one queued run's whole path through the store;
- *stats*: ``queue_stats(q, now, window=1)``, what ``durable queues`` does per queue (timed
  once the history's starts have left the one-second window: history is old, and the starts a
  window counts are work proportional to the window's use, not to history);
- *poll*: ``due_runs(now)``, which must leave queued runs out without reading them.

The finished runs are written through the store's own API as a worker leaves them: enqueued,
claimed 1,000 at a time by one ``claim_queued(limit=1000)``, completed with ``asyncio.gather``.
Stores are fresh and removed afterwards (``_stores.fresh_store``). Nothing is asserted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _stores import fresh_store
from flat_history import compare_calls, pending, run_command, summary

from durable.store import Capability, Lease, QueuedRun, QueueLimits, RunRecord, RunStatus, Store

QUEUE = "q"
FILL_BATCH = 1000
LIMITS = QueueLimits(concurrency=100)
"""A limit the benchmark never reaches: the claim counts the running runs, and always succeeds."""


def entry_of(run: RunRecord) -> QueuedRun:
    return QueuedRun(run.run_id, QUEUE, enqueued_at=run.created_at)


async def complete(store: Store, lease: Lease) -> None:
    await store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True)


async def add_finished(store: Store, count: int, created_at: float) -> None:
    """``count`` runs that went through ``QUEUE`` and completed, as a worker leaves them."""
    for first in range(0, count, FILL_BATCH):
        numbers = range(first, min(first + FILL_BATCH, count))
        runs = [pending(f"done-{n:07d}", created_at + n * 1e-3) for n in numbers]
        await asyncio.gather(*(store.enqueue_run(run, entry_of(run)) for run in runs))
        claimed = await store.claim_queued(
            QUEUE, time.time(), "filler", 600.0, QueueLimits(), limit=len(numbers)
        )  # fmt: skip
        if len(claimed) != len(numbers):
            raise RuntimeError(f"{store!r}: claimed {len(claimed)} of {len(numbers)} queued runs")
        await asyncio.gather(*(complete(store, lease) for _, lease in claimed))


def operations(store: Store, label: str) -> dict[str, Callable[[int], Awaitable[Any]]]:
    async def claim(i: int) -> None:
        run = pending(f"new-{label}-{i:06d}", time.time())
        await store.enqueue_run(run, entry_of(run))
        claimed = await store.claim_queued(QUEUE, time.time(), "bench", 30.0, LIMITS)
        if [r.run_id for r, _ in claimed] != [run.run_id]:
            raise RuntimeError(f"{store!r}: claimed {[r.run_id for r, _ in claimed]}, not {run.run_id!r}")
        await complete(store, claimed[0][1])

    async def stats(_: int) -> None:
        await store.queue_stats(QUEUE, time.time(), window=1.0)

    async def poll(_: int) -> None:
        if await store.due_runs(time.time()):
            raise RuntimeError(f"{store!r}: due_runs returned queued runs")

    return {"claim": claim, "stats": stats, "poll": poll}


async def bench_store(name: str, finished: int, rounds: int, ops: int) -> list[dict[str, Any]]:
    async with fresh_store(name, "flatq") as empty, fresh_store(name, "flatq") as full:
        if Capability.QUEUES not in full.capabilities:
            print(f"{name}: skipped (no queues capability)", file=sys.stderr)
            return []
        filling = time.perf_counter()
        await add_finished(full, finished, time.time() - finished * 1e-3 - 3600)
        fill_s = round(time.perf_counter() - filling, 1)
        await asyncio.sleep(1.5)  # the history's starts leave the rate window ``stats`` asks about
        calls = operations(empty, "empty"), operations(full, "full")
        results = [
            summary(op, *await compare_calls(calls[0][op], calls[1][op], rounds, ops))
            for op in ("claim", "stats", "poll")
        ]
    for result in results:
        result.update(store=name, finished=finished, fill_seconds=fill_s)
    return results


async def main() -> None:
    await run_command(
        __doc__,
        bench_store,
        ops=50,
        doing="adding {finished:,} finished queued runs ...",
        op_width=12,
        fill=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
