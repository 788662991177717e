"""A per-tenant queue: one tenant's flood does not hold up another's run.

    python examples/flow_control/tenant_queue.py

``partition_concurrency=1``: at most one run per tenant at once, ``concurrency=4`` in all.
Tenant A enqueues 6 exports, then tenant B one: B's export is not queued behind A's six.
Offline, on the in-memory store.
"""

from __future__ import annotations

import asyncio

from durable import Workflow

wf = Workflow("reports", db="memory://")
exports = wf.queue("exports", concurrency=4, partition_concurrency=1)
finished: list[str] = []


@wf.task
async def render(tenant: str, n: int) -> str:
    await asyncio.sleep(0.05)
    finished.append(f"{tenant}-{n}")
    return f"{tenant}/export-{n}.csv"


@wf.workflow(id="export-{tenant}-{n}", queue=exports)
async def export(tenant: str, n: int) -> str:
    return await render(tenant, n)


async def main() -> None:
    run_ids = [await export.options(partition_key="tenant-a").start(tenant="a", n=n) for n in range(6)]
    run_ids.append(await export.options(partition_key="tenant-b").start(tenant="b", n=0))
    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.run_worker(stop=stop))
    for run_id in run_ids:
        await wf.wait_for(run_id, timeout=30)
    stop.set()
    await worker
    print(f"finished in order: {', '.join(finished)}")
    print(f"tenant b's export finished {finished.index('b-0') + 1}th of {len(finished)}")


if __name__ == "__main__":
    asyncio.run(main())
