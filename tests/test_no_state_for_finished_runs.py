"""A process that has run thousands of workflows holds no per-run state for the finished ones."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# Run in a fresh interpreter: objects left by other tests would blur the counts.
SCENARIO = textwrap.dedent(
    """
    import asyncio, gc, sys
    from durable import RunContext, Workflow
    from durable.store import Lease, RunRecord, StepRecord

    def live(kind):
        gc.collect()
        return sum(1 for obj in gc.get_objects() if type(obj) is kind)

    async def main(path):
        wf = Workflow("many", db=f"sqlite:///{path}")

        @wf.task
        async def step(i: int) -> int:
            return i

        @wf.workflow(id="run-{n}")
        async def flow(n: int) -> int:
            return await step(n) + await step(n)

        def per_run_objects():
            return (len(wf._active), live(RunContext), live(Lease), live(StepRecord), live(RunRecord))

        await wf.get_store()
        await asyncio.gather(*(flow(n) for n in range(1000)))
        after_1000 = per_run_objects()
        for batch in range(1, 5):
            await asyncio.gather(*(flow(batch * 1000 + n) for n in range(1000)))
        print(after_1000, per_run_objects(), await flow(4999), len(await wf.list_runs(limit=10_000)))
        await wf.close()

    asyncio.run(main(sys.argv[1]))
    """
)


def test_finished_runs_leave_nothing_behind_in_the_process(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(tmp_path / "many.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # After 1,000 and after 5,000 finished runs the process holds no run context, lease, step or
    # run record, while the store has all 5,000 runs.
    assert result.stdout.split("\n")[0] == "(0, 0, 0, 0, 0) (0, 0, 0, 0, 0) 9998 5000"
