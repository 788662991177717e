"""A process that has run thousands of workflows holds no per-run state for the finished ones."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from durable import RunContext, Workflow
from durable.store import Lease, RunRecord, StepRecord


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


async def test_finished_runs_leave_nothing_behind_in_the_process(tmp_path: Path) -> None:
    wf = Workflow("many", db=f"sqlite:///{tmp_path / 'many.db'}")

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow(id="run-{n}")
    async def flow(n: int) -> int:
        return await step(n) + await step(n)

    def per_run_objects() -> tuple[int, ...]:
        return (len(wf._active), live(RunContext), live(Lease), live(StepRecord), live(RunRecord))

    await wf.get_store()
    await asyncio.gather(*(flow(n) for n in range(1000)))
    after_1000 = per_run_objects()
    for batch in range(1, 5):
        await asyncio.gather(*(flow(batch * 1000 + n) for n in range(1000)))
    # 5,000 finished runs later the process holds exactly what it held after 1,000: nothing.
    assert per_run_objects() == after_1000 == (0, 0, 0, 0, 0)
    assert await flow(4999) == 9998  # while the store still has every run
    await wf.close()
