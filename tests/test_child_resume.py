"""A child run resumed on its own (``wf.resume(child_id)``, or a worker claiming it after its
parent's process died) replays its completed steps: its journal keys are recorded under the
parent's step scope, and the resumed body runs under that same scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from durable import RunFailed, Workflow


async def test_a_child_resumed_by_itself_does_not_repeat_its_completed_steps(tmp_path: Path) -> None:
    wf = Workflow("children", db=f"sqlite:///{tmp_path / 'c.db'}")
    executed: list[str] = []
    fail_b = [True]

    @wf.task
    async def a() -> str:
        executed.append("a")
        return "a"

    @wf.task(retries=0)
    async def b() -> str:
        executed.append("b")
        if fail_b[0]:
            raise RuntimeError("b fails the first time")
        return "b"

    @wf.workflow()
    async def child() -> str:
        return await a() + await b()

    @wf.workflow(id="p")
    async def parent() -> str:
        return await child()

    with pytest.raises(RuntimeError):
        await parent()
    assert executed == ["a", "b"]
    child_id = next(run.run_id for run in await wf.list_runs() if run.parent_run_id == "p")
    fail_b[0] = False
    assert await wf.resume(child_id) == "ab"
    assert executed == ["a", "b", "b"]  # a replayed from its checkpoint, b retried
    with pytest.raises(RunFailed):
        await wf.wait_for("p", timeout=1)  # the parent failed; resuming it replays the child
    assert await wf.resume("p") == "ab"
    assert executed == ["a", "b", "b"]
    await wf.close()
