"""Stopping a run's body, which runs in its caller's task: the caller gets the reason, and its task
is left as it was (no cancellation left pending or counted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from durable import RunStatus, Workflow
from durable.context import current_run
from durable.errors import RunCancelled


@pytest.fixture
async def wf(tmp_path: Any) -> AsyncIterator[Workflow]:
    wf = Workflow("stops", db=f"sqlite:///{tmp_path}/stops.db", default_retries=0)
    yield wf
    await wf.close()


async def assert_task_untouched() -> None:
    """The current task has no cancellation pending or counted, and its awaits still work."""
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await asyncio.sleep(0.001)


class Sleeper:
    """A workflow whose run ``sleeper-<n>`` sleeps for a minute; ``started`` is set once it sleeps."""

    def __init__(self, wf: Workflow) -> None:
        self.started = asyncio.Event()

        @wf.workflow(id="sleeper-{n}")
        async def sleeper(n: int) -> int:
            self.started.set()
            await asyncio.sleep(60)
            return n

        self.run = sleeper


async def test_cancel_from_another_task_stops_the_body_and_the_caller_gets_run_cancelled(
    wf: Workflow,
) -> None:
    sleeper = Sleeper(wf)

    async def caller() -> str:
        with pytest.raises(RunCancelled, match="'sleeper-1'"):
            await sleeper.run(1)
        await assert_task_untouched()
        return "caller went on"

    calling = asyncio.create_task(caller())
    await sleeper.started.wait()
    await wf.cancel("sleeper-1")
    assert await asyncio.wait_for(calling, 5) == "caller went on"
    run = await wf.get_run("sleeper-1")
    assert run is not None and run.status is RunStatus.CANCELLED


async def test_a_run_cancelling_itself_stops_at_its_next_await(wf: Workflow) -> None:
    ran: list[str] = []

    @wf.task
    async def after() -> None:
        ran.append("after")

    @wf.workflow(id="self-{n}")
    async def self_cancelling(n: int) -> int:
        ctx = current_run()
        assert ctx is not None
        await wf.cancel(ctx.run_id)
        await asyncio.sleep(0)  # the next time the body yields to the loop, it is stopped
        await after()
        return n

    with pytest.raises(RunCancelled, match="'self-1'"):
        await self_cancelling(1)
    assert ran == []
    await assert_task_untouched()
    run = await wf.get_run("self-1")
    assert run is not None and run.status is RunStatus.CANCELLED


async def test_a_run_cancelling_itself_as_its_last_act_ends_cancelled_and_its_caller_goes_on(
    wf: Workflow,
) -> None:
    @wf.workflow(id="last-{n}")
    async def last_act(n: int) -> int:
        ctx = current_run()
        assert ctx is not None
        await wf.cancel(ctx.run_id)
        return n  # no await after the cancel: the stop request still decides how the run ends

    with pytest.raises(RunCancelled, match="'last-1'"):
        await last_act(1)
    await assert_task_untouched()
    run = await wf.get_run("last-1")
    assert run is not None and run.status is RunStatus.CANCELLED


async def test_a_body_swallowing_the_stop_still_ends_with_the_reason(wf: Workflow) -> None:
    started = asyncio.Event()

    @wf.workflow(id="stubborn-{n}")
    async def stubborn(n: int) -> int:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass  # user code that swallows cancellation
        return n

    calling = asyncio.create_task(stubborn(1))
    await started.wait()
    await wf.cancel("stubborn-1")
    with pytest.raises(RunCancelled):
        await asyncio.wait_for(calling, 5)
    run = await wf.get_run("stubborn-1")
    assert run is not None and run.status is RunStatus.CANCELLED


async def test_cancelling_the_caller_interrupts_the_run_and_releases_it(wf: Workflow) -> None:
    sleeper = Sleeper(wf)
    calling = asyncio.create_task(sleeper.run(1))
    await sleeper.started.wait()
    calling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await calling
    run = await wf.get_run("sleeper-1")
    # Given back at once, its owner kept as the last one: it reads interrupted, any executor may take it.
    assert run is not None and run.status is RunStatus.INTERRUPTED and run.owner == wf.owner
    assert not run.lease_is_live(time.time())
    store = await wf.get_store()
    assert await store.claim_run("sleeper-1", "another-executor", 5.0) is not None


async def test_a_timeout_around_a_run_times_out_as_it_would_around_any_call(wf: Workflow) -> None:
    sleeper = Sleeper(wf)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await sleeper.run(1)
    await assert_task_untouched()
