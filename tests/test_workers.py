"""Issue 5 in one process: workers, durable sleep, parking, cancellation, deadlines, children."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from durable import RunStatus, Workflow
from durable.errors import RunCancelled, RunFailed, RunInProgress, RunTimeout
from durable.testing import virtual_time

from helpers import Calls, until_status


@asynccontextmanager
async def running_worker(wf: Workflow, poll: float = 0.02) -> AsyncIterator[Any]:
    stop = asyncio.Event()
    worker = wf.worker(poll_interval=poll)
    task = asyncio.ensure_future(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_started_runs_are_executed_by_a_worker(wf: Workflow, calls: Calls) -> None:
    @wf.task
    async def work(n: int) -> int:
        calls(f"work{n}")
        return n * n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return await work(n)

    run_ids = [await job.start(n) for n in range(3)]
    assert run_ids == ["job-0", "job-1", "job-2"]
    assert {r.status for r in await wf.list_runs()} == {RunStatus.PENDING}
    async with running_worker(wf):
        results = [await wf.wait_for(run_id, timeout=10) for run_id in run_ids]
    assert results == [0, 1, 4]
    assert sorted(calls.log) == ["work0", "work1", "work2"]


async def test_a_parked_signal_wait_is_resumed_by_the_worker_that_sees_the_signal(
    wf: Workflow, calls: Calls
) -> None:
    @wf.task
    async def before() -> None:
        calls("before")

    @wf.workflow(id="approval")
    async def approval() -> Any:
        await before()
        return await wf.signal("ok")

    await approval.start()
    async with running_worker(wf):
        run = await until_status(wf, "approval", RunStatus.WAITING)
        assert run.owner is None  # parked: no process holds it
        await wf.complete("approval", "ok", {"yes": True})
        assert await wf.wait_for("approval", timeout=10) == {"yes": True}
    assert calls.log == ["before"]


async def test_durable_sleep_keeps_its_original_wake_time_and_parks_in_a_worker(wf: Workflow) -> None:
    week = 7 * 86400

    @wf.workflow(id="napper")
    async def napper() -> float:
        await wf.sleep(week)
        return clock.time()

    async with virtual_time() as clock, running_worker(wf):
        started = clock.time()
        await napper.start()
        with clock.hold():  # no jump while this test looks at the parked run
            run = await until_status(wf, "napper", RunStatus.WAITING)
        assert run.owner is None and run.wake_at is not None
        assert started + week - 0.1 <= run.wake_at <= started + week + 5
        woke = await wf.wait_for("napper", timeout=10)
    assert woke >= run.wake_at
    [sleep_step] = await wf.get_steps("napper")
    assert sleep_step.key == "durable:sleep" and float(sleep_step.result or 0) == run.wake_at


async def test_a_short_sleep_in_a_direct_call_blocks_in_process(wf: Workflow) -> None:
    @wf.workflow(id="short-nap")
    async def nap() -> str:
        await wf.sleep(0.05)
        return "rested"

    assert await nap() == "rested"


async def test_cancel_stops_a_running_run_and_resume_continues_it(wf: Workflow, calls: Calls) -> None:
    gate = asyncio.Event()

    @wf.task
    async def step(n: int) -> int:
        calls(f"step{n}")
        if n == 1:
            await gate.wait()
        return n

    @wf.workflow(id="long")
    async def long() -> list[int]:
        return [await step(0), await step(1), await step(2)]

    task = asyncio.ensure_future(long())
    while calls.count("step1") == 0:
        await asyncio.sleep(0.005)
    await wf.cancel("long")
    with pytest.raises(RunCancelled):
        await task
    assert (await wf.get_run("long")).status is RunStatus.CANCELLED  # type: ignore[union-attr]
    with pytest.raises(RunCancelled):
        await long()  # a cancelled run is not resumed by calling it
    gate.set()
    assert await wf.resume("long") == [0, 1, 2]
    assert calls.log == ["step0", "step1", "step1", "step2"]


async def test_cancelling_an_idle_run_is_immediate(wf: Workflow) -> None:
    @wf.workflow(id="idle")
    async def idle() -> None: ...

    await idle.start()
    run = await wf.cancel("idle")
    assert run.status is RunStatus.CANCELLED and run.cancel_requested


async def test_run_deadline_fails_the_run_with_run_timeout(wf: Workflow) -> None:
    @wf.workflow(id="slow", timeout=0.1)
    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(RunTimeout):
        await slow()
    run = await wf.get_run("slow")
    assert run is not None and run.status is RunStatus.FAILED and run.deadline is not None
    assert run.error_info is not None and run.error_info.type.endswith("RunTimeout")


async def test_child_workflows_get_deterministic_ids_and_are_checkpointed_in_the_parent(
    wf: Workflow, calls: Calls
) -> None:
    @wf.workflow
    async def child(x: int) -> int:
        calls(f"child{x}")
        return x + 100

    @wf.workflow(id="parent")
    async def parent() -> list[int]:
        return [await child(1), await child(2)]

    assert await parent() == [101, 102]
    assert await parent() == [101, 102]
    assert calls.log == ["child1", "child2"]
    keys = [s.key for s in await wf.get_steps("parent")]
    assert keys == ["durable:child@child", "durable:child@child#1"]
    kid = await wf.get_run("parent/durable:child@child")
    assert kid is not None and kid.parent_run_id == "parent" and kid.status is RunStatus.COMPLETED


async def test_cancelling_a_parent_cancels_its_children(wf: Workflow) -> None:
    @wf.workflow
    async def child() -> None:
        await asyncio.sleep(30)

    @wf.workflow(id="family")
    async def family() -> None:
        await child()

    task = asyncio.ensure_future(family())
    while await wf.get_run("family/durable:child@child") is None:
        await asyncio.sleep(0.005)
    await wf.cancel("family")
    with pytest.raises(RunCancelled):
        await task
    kid = await wf.get_run("family/durable:child@child")
    assert kid is not None and kid.status is RunStatus.CANCELLED


async def test_a_run_owned_by_a_live_executor_is_not_executed_twice(store_url: str) -> None:
    if store_url.startswith("memory"):
        pytest.skip("two Workflow objects cannot share a memory store by URL")
    first, second = Workflow("app", db=store_url), Workflow("app", db=store_url)
    gate = asyncio.Event()
    executions: list[str] = []
    for wf in (first, second):

        @wf.workflow(id="shared")
        async def shared() -> str:
            executions.append("body")
            await gate.wait()
            return "done"

    one = asyncio.ensure_future(first._workflows["shared"]())
    while not executions:
        await asyncio.sleep(0.005)
    with pytest.raises(RunInProgress):
        await second._workflows["shared"].call(None, wait=False)
    waiter = asyncio.ensure_future(second._workflows["shared"]())
    await asyncio.sleep(0.05)
    gate.set()
    assert await one == "done" and await waiter == "done"
    assert executions == ["body"]
    await first.close()
    await second.close()


async def test_waiting_for_a_failed_run_raises_run_failed(wf: Workflow) -> None:
    @wf.workflow(id="doomed")
    async def doomed() -> None:
        raise ValueError("bad input")

    await doomed.start()
    async with running_worker(wf):
        with pytest.raises(RunFailed, match="bad input"):
            await wf.wait_for("doomed", timeout=10)


async def test_worker_reports_runs_of_workflows_it_does_not_define(store_url: str) -> None:
    if store_url.startswith("memory"):
        pytest.skip("needs a store shared by two Workflow objects")
    old, new = Workflow("app", db=store_url), Workflow("app", db=store_url)

    @old.workflow(id="legacy")
    async def legacy() -> None: ...

    await legacy.start()
    worker = new.worker()
    assert await worker.poll_once() == 0
    assert worker.unknown_runs == {"legacy": "legacy"}
    assert (await new.get_run("legacy")).status is RunStatus.PENDING  # type: ignore[union-attr]
    await old.close()
    await new.close()
