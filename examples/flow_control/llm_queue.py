"""A rate-limited, LLM-style queue: at most 3 calls at once, at most 4 starts a second.

    python examples/flow_control/llm_queue.py

Runs offline on the in-memory store: it starts 10 summaries, serves them with one worker in
this process and prints when each started, the most that ran at once, and the busiest second;
then calls the workflow directly, which executes in the caller, on no queue.
With a shared store (SQLite, Redis, PostgreSQL) the limits hold across every worker process and
host: they are checked inside the store's claim.
"""

from __future__ import annotations

import asyncio
import time

from durable import Workflow

wf = Workflow("shop", db="memory://")
llm = wf.queue("llm", concurrency=3, worker_concurrency=3, rate_limit=(4, 1.0))

started: list[float] = []
running = peak = 0


@wf.task
async def call_model(doc_id: str) -> str:
    """Stands for a call to a rate-limited API."""
    global running, peak
    started.append(time.monotonic())
    running += 1
    peak = max(peak, running)
    await asyncio.sleep(0.1)
    running -= 1
    return f"summary of document {doc_id}"


@wf.workflow(id="summarise-{doc_id}", queue="llm")
async def summarise(doc_id: str) -> str:
    return await call_model(doc_id)


async def main() -> None:
    run_ids = [await summarise.start(doc_id=str(n)) for n in range(10)]
    urgent = await summarise.options(priority=-1).start(doc_id="urgent")
    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.run_worker(stop=stop))
    first = await wf.wait_for(urgent, timeout=30)
    results = [await wf.wait_for(run_id, timeout=30) for run_id in run_ids]
    stop.set()
    await worker
    t0 = started[0]
    busiest = max(sum(1 for t in started if s <= t < s + 1.0) for s in started)
    print(f"first done: {first}")
    print(f"{len(results)} summaries; started at {', '.join(f'{t - t0:.2f}' for t in started)} s")
    print(f"at most {peak} at once (concurrency=3); at most {busiest} started in any second (rate_limit=4/s)")
    # A direct call is executed by its caller, at once: a queue governs the runs workers execute.
    direct = await summarise(doc_id="direct")
    print(f"direct call, executed here outside the queue's limits: {direct}")


if __name__ == "__main__":
    asyncio.run(main())
