"""durable.testing (issue 20, part 2): virtual time, crash injection and the pytest fixtures."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

import pytest

from durable import RunStatus, Workflow
from durable.backoff import exponential
from durable.errors import ConfigurationError, RunInProgress, RunTimeout, SignalTimeout, StoreNotFound
from durable.testing import SimulatedCrash, VirtualClock, crash_after, crash_before, virtual_time

from helpers import Calls, until_status

WEEK = 7 * 86400.0

pytest_plugins = ["pytester"]


async def test_a_week_of_sleep_and_exponential_backoff_pass_in_virtual_time(
    durable_wf: Workflow, durable_clock: VirtualClock
) -> None:
    wf = durable_wf
    attempts: list[float] = []

    @wf.task(retries=4, backoff=exponential(base=2, max=3600))
    async def flaky() -> int:
        attempts.append(durable_clock.time())
        if len(attempts) < 5:
            raise ConnectionError("not yet")
        return len(attempts)

    @wf.workflow(id="slow")
    async def slow() -> int:
        await wf.sleep(WEEK)
        return await flaky()

    began, began_wall = durable_clock.time(), time.time()
    assert await slow() == 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert [round(gap) for gap in gaps] == [2, 4, 8, 16]
    assert attempts[0] - began == pytest.approx(WEEK, abs=5)
    assert durable_clock.offset >= WEEK + 30 - 5
    assert time.time() - began_wall < 30  # no wall-clock week, no 30 s of backoff
    [sleep, step] = sorted(await wf.get_steps("slow"), key=lambda s: s.started_at)
    assert sleep.key == "durable:sleep" and float(sleep.result or 0) == pytest.approx(began + WEEK, abs=5)
    assert step.attempts == 5 and step.finished_at - step.started_at == pytest.approx(30, abs=5)


async def test_a_run_deadline_passes_in_virtual_time(
    durable_wf: Workflow, durable_clock: VirtualClock
) -> None:
    wf, calls = durable_wf, Calls()

    @wf.workflow(id="late", timeout=3600)
    async def late() -> None:
        calls("began")
        await wf.sleep(2 * 86400)
        calls("woke")

    with pytest.raises(RunTimeout):
        await late()
    run = await wf.get_run("late")
    assert run is not None and run.status is RunStatus.FAILED and run.deadline is not None
    assert run.deadline - run.created_at == 3600
    assert calls.log == ["began"]
    assert durable_clock.time() == pytest.approx(run.deadline, abs=5)


async def test_a_signal_timeout_passes_in_virtual_time_and_replays(
    durable_wf: Workflow, durable_clock: VirtualClock
) -> None:
    wf = durable_wf

    @wf.workflow(id="asks")
    async def asks() -> str:
        try:
            return str(await wf.signal("approval", timeout=86400))
        except SignalTimeout:
            return "timed out"

    began = durable_clock.time()
    assert await asks() == "timed out"
    assert durable_clock.time() - began == pytest.approx(86400, abs=5)
    await wf.complete("asks", "approval", "late")  # after the fact: the journal keeps the timeout
    assert await asks() == "timed out"


async def test_a_signal_sent_while_the_run_waits_beats_its_virtual_timeout(
    durable_wf: Workflow, durable_clock: VirtualClock
) -> None:
    wf = durable_wf

    @wf.workflow(id="asks")
    async def asks() -> Any:
        return await wf.signal("approval", timeout=3600)

    waiting = asyncio.ensure_future(asks())
    with durable_clock.hold():  # this test polls on the wall clock: no jumps meanwhile
        await until_status(wf, "asks", RunStatus.WAITING)
        await wf.complete("asks", "approval", {"ok": True})
    assert await waiting == {"ok": True}
    assert durable_clock.jumps == []


async def test_leases_stay_on_the_wall_clock_while_virtual_time_jumps(durable_wf: Workflow) -> None:
    """A run sleeping in its process holds its lease for real seconds: a jump of a week neither
    lets another executor take it nor makes its own process give it up."""
    wf = durable_wf
    wf.lease_seconds = 0.3
    other = Workflow("other", db=await wf.get_store(), lease_seconds=0.3)

    @wf.workflow(id="nap")
    async def nap() -> str:
        await wf.sleep(2 * WEEK)
        return "rested"

    other.workflow(id="nap")(nap.fn)
    async with virtual_time(auto=False) as clock:
        napping = asyncio.ensure_future(nap())
        run = await until_status(wf, "nap", RunStatus.WAITING)
        await clock.advance(WEEK)
        await asyncio.sleep(0.5)  # wall time past the lease it started with: renewals keep it
        now = await other.get_run("nap")  # as another executor reports it: still held, not interrupted
        assert now is not None and now.status is RunStatus.WAITING
        assert now.owner == wf.owner and now.lease_token == run.lease_token
        assert now.lease_expires_at is not None and time.time() < now.lease_expires_at <= time.time() + 0.31
        with pytest.raises(RunInProgress):
            await other._workflows["nap"].call("nap", wait=False)
        assert await other.worker().poll_once() == 0
        await clock.advance(WEEK)
        assert await asyncio.wait_for(napping, 10) == "rested"
    final = await wf.get_run("nap")
    assert final is not None and final.status is RunStatus.COMPLETED and final.lease_token == 1


async def test_a_parked_sleep_wakes_in_a_worker_when_virtual_time_reaches_it(
    durable_wf: Workflow, durable_clock: VirtualClock
) -> None:
    wf = durable_wf

    @wf.workflow(id="napper")
    async def napper() -> float:
        await wf.sleep(WEEK)
        return durable_clock.time()

    await napper.start()
    stop = asyncio.Event()
    worker = wf.worker(poll_interval=30)  # a poll every 30 wall seconds: the jump wakes it
    working = asyncio.ensure_future(worker.run(stop))
    try:
        woke = await wf.wait_for("napper", timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(working, 10)
    [sleep] = await wf.get_steps("napper")
    assert woke >= float(sleep.result or 0)
    assert worker.resumed == 2  # started, parked, woken: two executions by the worker
    run = await wf.get_run("napper")
    assert run is not None and run.lease_token == 2


async def test_virtual_time_never_starts_behind_the_wall_clock_nor_twice() -> None:
    with pytest.raises(ConfigurationError, match="before the wall clock"):
        async with virtual_time(start=time.time() - 60):
            pass
    async with virtual_time(start=time.time() + 86400) as clock:
        assert clock.offset == pytest.approx(86400, abs=5)
        with pytest.raises(ConfigurationError, match="already in force"):
            async with virtual_time():
                pass


async def test_crash_after_stops_the_run_after_the_checkpoint_and_resume_skips_the_step(
    durable_wf: Workflow,
) -> None:
    wf, calls = durable_wf, Calls()

    @wf.task
    async def reserve() -> str:
        calls("reserve")
        return "r1"

    @wf.task
    async def charge() -> str:
        calls("charge")
        return "c1"

    @wf.task
    async def ship() -> str:
        calls("ship")
        return "s1"

    @wf.workflow(id="order")
    async def order() -> list[str]:
        return [await reserve(), await charge(), await ship()]

    with crash_after(charge) as point:
        with pytest.raises(SimulatedCrash) as crashed:
            await order()
        assert (crashed.value.run_id, crashed.value.step_key) == ("order", "charge")
        run = await wf.get_run("order")
        assert run is not None and run.status is RunStatus.INTERRUPTED
        assert [s.key for s in await wf.get_steps("order")] == ["reserve", "charge"]
        assert await order() == ["r1", "c1", "s1"]  # the same block: one crash, then it resumes
    assert point.crashes == [("order", "charge")]
    assert calls.log == ["reserve", "charge", "ship"]


async def test_crash_before_loses_the_checkpoint_so_the_body_runs_again(durable_wf: Workflow) -> None:
    wf, calls = durable_wf, Calls()

    @wf.task
    async def charge(n: int) -> int:
        calls("charge")
        return n

    @wf.workflow(id="pay")
    async def pay() -> int:
        return await charge(1) + await charge(2)

    with crash_before("charge#1"), pytest.raises(SimulatedCrash):
        await pay()
    assert [s.key for s in await wf.get_steps("pay")] == ["charge"]
    assert await pay() == 3
    assert calls.log == ["charge", "charge", "charge"]  # charge#1's body ran twice


async def test_a_worker_resumes_a_run_crashed_under_it(
    durable_wf: Workflow, durable_clock: VirtualClock
) -> None:
    wf, calls = durable_wf, Calls()

    @wf.task
    async def work() -> None:
        calls("work")

    @wf.workflow(id="job")
    async def job() -> str:
        await wf.sleep(86400)
        await work()
        return "done"

    await job.start()
    stop = asyncio.Event()
    worker = wf.worker(poll_interval=0.01)
    working = asyncio.ensure_future(worker.run(stop))
    try:
        with crash_after("durable:sleep") as point:
            assert await wf.wait_for("job", timeout=10) == "done"
    finally:
        stop.set()
        await asyncio.wait_for(working, 10)
    assert point.crashes == [("job", "durable:sleep")]
    assert calls.log == ["work"]
    run = await wf.get_run("job")
    assert run is not None and run.lease_token == 3  # crashed, resumed and parked, woken


def test_a_crash_point_names_a_task_or_a_step_key(durable_wf: Workflow) -> None:
    @durable_wf.workflow
    async def flow() -> None:
        pass

    for bad in (flow, "", 3):
        with pytest.raises(ConfigurationError), crash_after(bad):  # type: ignore[arg-type]
            pass


def test_durable_wf_runs_on_every_store_given(pytester: pytest.Pytester, tmp_path: Any) -> None:
    pytester.makepyfile(
        test_app="""
        from durable import Workflow

        async def test_store(durable_wf: Workflow, durable_store_url: str) -> None:
            @durable_wf.workflow(id="one")
            async def one() -> int:
                return 1

            assert await one() == 1
            print("STORE", type(await durable_wf.get_store()).__name__, durable_store_url.split(":")[0])
        """
    )
    result = pytester.runpytest_subprocess(
        "-s",
        "-p",
        "asyncio",
        "-o",
        "asyncio_mode=auto",
        "--durable-store",
        "memory",
        "--durable-store",
        "sqlite",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*STORE InMemoryStore memory*", "*STORE SQLiteStore sqlite*"])


def test_a_server_store_gets_a_prefix_of_its_own_per_test_dropped_after(pytester: pytest.Pytester) -> None:
    if not os.environ.get("DURABLE_TEST_REDIS_URL"):
        pytest.skip("set DURABLE_TEST_REDIS_URL to a Redis server")
    pytester.makepyfile(
        test_app="""
        async def test_one(durable_wf, durable_store_url):
            @durable_wf.workflow(id="one")
            async def one() -> int:
                return 1

            assert await one() == 1
            print("URL", durable_store_url)
        """
    )
    result = pytester.runpytest_subprocess(
        "-s", "-p", "asyncio", "-o", "asyncio_mode=auto", "--durable-store", "redis"
    )
    result.assert_outcomes(passed=1)
    [url] = [line.split("URL ", 1)[1].strip() for line in result.outlines if "URL " in line]
    assert "prefix=durable-test-durabletest" in url

    async def reopen() -> None:
        from durable._plugins import get_plugin_manager

        store = get_plugin_manager().store_from_url(url)
        try:
            await store.open(create=False)
        finally:
            await store.close()

    with pytest.raises(StoreNotFound):  # its keys were deleted after the test
        asyncio.run(reopen())
