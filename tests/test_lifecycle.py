"""The run lifecycle as users meet it: outcomes that are recorded, interrupted runs that say so,
cancels that finish without an executor, resumes that check first, waits that say what for."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lifecycle_check import CheckedStore

from durable import RunStatus, Workflow
from durable import context as context_module
from durable._lifecycle import TRANSITIONS, Actor, activity_of, allowed, is_due
from durable._owner import _machine, _start_ticks
from durable.errors import (
    ConfigurationError,
    LifecycleError,
    RunCancelled,
    RunInProgress,
    SerializationError,
    StepTimeout,
    StoreUnavailable,
    WaitTimeout,
)
from durable.store import Lease, StepRecord
from durable_memory import InMemoryStore

from helpers import Calls, until_status


@pytest.fixture
async def checked() -> AsyncIterator[CheckedStore]:
    store = CheckedStore(InMemoryStore())
    yield store
    assert store.violations == [], f"status changes the lifecycle does not allow: {store.violations}"


@pytest.fixture
async def cwf(checked: CheckedStore) -> AsyncIterator[Workflow]:
    wf = Workflow("life", db=checked, default_retries=0, lease_seconds=0.6)
    yield wf
    await wf.close()


def dead_owner() -> str:
    """An owner id of a process of this machine that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = _start_ticks(child.pid)
    assert child.stdin is not None
    child.stdin.close()
    child.wait()
    return f"{os.uname().nodename}:{_machine()}:{child.pid}.{start}:deadbeef"


# -- the state machine itself ------------------------------------------------------------------


def test_every_transition_names_a_store_method_and_only_owners_end_runs() -> None:
    from durable.store import Store

    for t in TRANSITIONS:
        assert hasattr(Store, t.by), t
        if t.target in (RunStatus.COMPLETED, RunStatus.FAILED):
            assert t.actor is Actor.OWNER, t
    assert not allowed(RunStatus.COMPLETED, RunStatus.RUNNING, Actor.EXECUTOR)
    assert not allowed(RunStatus.CANCELLED, RunStatus.RUNNING, Actor.EXECUTOR)  # resume() resets first
    assert not allowed(RunStatus.PENDING, RunStatus.COMPLETED, Actor.OWNER)


async def test_an_owner_write_the_lifecycle_does_not_list_raises_before_writing(cwf: Workflow) -> None:
    @cwf.workflow(id="w")
    async def w() -> int:
        ctx = context_module.current_run()
        assert ctx is not None
        with pytest.raises(LifecycleError, match="'w'") as caught:
            await ctx.update(RunStatus.PENDING)
        assert caught.value.run_id == "w"
        return 1

    assert await w() == 1
    run = await cwf.get_run("w")
    assert run is not None and run.status is RunStatus.COMPLETED


async def test_whole_scenarios_make_only_listed_transitions(cwf: Workflow, checked: CheckedStore) -> None:
    calls = Calls()

    @cwf.task
    async def step(n: int) -> int:
        calls("step")
        if n < 0:
            raise ValueError("negative")
        return n

    @cwf.workflow(id="flow-{n}")
    async def flow(n: int) -> int:
        await step(n)
        got = await cwf.signal("go")
        await cwf.sleep(1.2)
        return n + int(got)

    start = await flow.start(1)
    worker = asyncio.ensure_future(cwf.run_worker(poll_interval=0.02))
    try:
        await until_status(cwf, start, RunStatus.WAITING)
        await cwf.complete(start, "go", 2)
        assert await cwf.wait_for(start, timeout=10) == 3
        with pytest.raises(ValueError):
            await flow(-1)
        await cwf.cancel("flow--1")
        with pytest.raises(ValueError):
            await cwf.resume("flow--1")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    kinds = {(before, after, actor) for _, before, after, actor in checked.changes}
    assert (None, RunStatus.PENDING, Actor.CALLER) in kinds
    assert (RunStatus.RUNNING, RunStatus.WAITING, Actor.OWNER) in kinds
    assert (RunStatus.WAITING, RunStatus.RUNNING, Actor.EXECUTOR) in kinds
    assert (RunStatus.RUNNING, RunStatus.COMPLETED, Actor.OWNER) in kinds
    assert (RunStatus.RUNNING, RunStatus.FAILED, Actor.OWNER) in kinds
    assert (RunStatus.FAILED, RunStatus.CANCELLED, Actor.CALLER) in kinds
    assert (RunStatus.CANCELLED, RunStatus.PENDING, Actor.CALLER) in kinds
    assert (RunStatus.PENDING, RunStatus.RUNNING, Actor.EXECUTOR) in kinds
    assert calls.count("step") == 3


# -- defect 1: an unserialisable return value ---------------------------------------------------


async def test_a_return_value_that_cannot_be_stored_fails_the_run_naming_it(cwf: Workflow) -> None:
    @cwf.workflow(id="bad-return")
    async def bad_return() -> Any:
        return object()

    with pytest.raises(SerializationError, match="workflow 'bad_return' run 'bad-return'") as caught:
        await bad_return()
    assert caught.value.run_id == "bad-return"
    run = await cwf.get_run("bad-return")
    assert run is not None and run.status is RunStatus.FAILED and run.owner is None
    assert not is_due(run, time.time() + 3600)  # no worker re-runs it, now or after its lease
    assert "SerializationError" in (run.error or "")


# -- defect 2: interrupted runs -----------------------------------------------------------------


class Slow:
    """A workflow whose task ``nap`` sleeps for a minute; ``napping`` is set once it does."""

    def __init__(self, wf: Workflow) -> None:
        self.napping = asyncio.Event()

        @wf.task
        async def nap() -> None:
            self.napping.set()
            await asyncio.sleep(60)

        @wf.workflow(id="slow-{n}")
        async def slow(n: int) -> int:
            await nap()
            return n

        self.run = slow


async def test_a_run_whose_caller_is_cancelled_reads_interrupted_with_its_step_and_owner(
    cwf: Workflow,
) -> None:
    slow = Slow(cwf)
    calling = asyncio.ensure_future(slow.run(1))
    await slow.napping.wait()
    calling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await calling
    run = await cwf.get_run("slow-1")
    assert run is not None and run.status is RunStatus.INTERRUPTED
    assert run.owner == cwf.owner and not run.lease_is_live(time.time())
    assert activity_of(run) == {"steps": [{"key": "nap", "attempt": 1}]}
    found = await cwf.list_runs(statuses=frozenset({RunStatus.INTERRUPTED}))
    assert [r.run_id for r in found] == ["slow-1"]
    assert await cwf.list_runs(statuses=frozenset({RunStatus.RUNNING})) == []


async def test_a_wait_for_that_gives_up_leaves_the_run_interrupted_not_running(cwf: Workflow) -> None:
    slow = Slow(cwf)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow.run(2), 0.2)
    run = await cwf.get_run("slow-2")
    assert run is not None and run.status is RunStatus.INTERRUPTED


async def test_the_heartbeat_records_the_step_in_flight_so_a_crash_leaves_it_known(cwf: Workflow) -> None:
    slow = Slow(cwf)
    calling = asyncio.ensure_future(slow.run(3))
    try:
        await slow.napping.wait()
        await asyncio.sleep(0.5)  # past the first renewal, at a third of the 0.6 s lease
        store = await cwf.get_store()
        stored = await store.get_run("slow-3")
        assert stored is not None and stored.status is RunStatus.RUNNING
        assert activity_of(stored) == {"steps": [{"key": "nap", "attempt": 1}]}
        assert (await cwf.get_run("slow-3")).status is RunStatus.RUNNING  # type: ignore[union-attr]
    finally:
        calling.cancel()
        await asyncio.gather(calling, return_exceptions=True)


def test_a_killed_owner_reads_interrupted_at_once_with_its_step(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    script = f"""
import asyncio
from durable import Workflow
wf = Workflow("killed", db={str(db)!r}, lease_seconds=0.6)

@wf.task
async def nap() -> None:
    print("napping", flush=True)
    await asyncio.sleep(60)

@wf.workflow(id="victim")
async def victim() -> None:
    await nap()

asyncio.run(victim())
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "napping"
        time.sleep(0.5)  # one renewal records the step in flight
        child.kill()
        child.wait()
        wf = Workflow("killed", db=str(db))
        run = asyncio.run(wf.get_run("victim"))
        assert run is not None and run.status is RunStatus.INTERRUPTED
        assert run.owner is not None and f":{child.pid}." in run.owner
        assert activity_of(run) == {"steps": [{"key": "nap", "attempt": 1}]}
        asyncio.run(wf.close())
    finally:
        child.kill()


# -- defect 3: cancels that finish ---------------------------------------------------------------


async def test_cancelling_a_parked_run_cancels_it_at_once(cwf: Workflow) -> None:
    @cwf.workflow(id="parked")
    async def parked() -> Any:
        return await cwf.signal("never")

    await parked.start()
    worker = asyncio.ensure_future(cwf.run_worker(poll_interval=0.02))
    try:
        await until_status(cwf, "parked", RunStatus.WAITING)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    after = await cwf.cancel("parked")
    assert after.status is RunStatus.CANCELLED
    with pytest.raises(RunCancelled):
        await cwf.wait_for("parked", timeout=1)


async def test_cancelling_an_interrupted_run_and_its_children_cancels_them_at_once(cwf: Workflow) -> None:
    napping = asyncio.Event()

    @cwf.workflow()
    async def child() -> None:
        napping.set()
        await asyncio.sleep(60)

    @cwf.workflow(id="parent")
    async def parent() -> None:
        await child()

    calling = asyncio.ensure_future(parent())
    await napping.wait()
    calling.cancel()
    await asyncio.gather(calling, return_exceptions=True)
    runs = {r.run_id: r for r in await cwf.list_runs()}
    assert {r.status for r in runs.values()} == {RunStatus.INTERRUPTED}
    assert len(runs) == 2
    await cwf.cancel("parent")
    assert {r.status for r in await cwf.list_runs()} == {RunStatus.CANCELLED}


async def test_cancelling_a_run_whose_owner_died_with_a_live_lease_cancels_it_at_once(cwf: Workflow) -> None:
    @cwf.workflow(id="orphan")
    async def orphan() -> None:
        pass

    store = await cwf.get_store()
    await orphan.start()
    owner = dead_owner()
    lease = await store.claim_run("orphan", owner, 60.0)
    assert lease is not None
    before = await cwf.get_run("orphan")
    assert before is not None and before.status is RunStatus.INTERRUPTED  # its process is gone
    after = await cwf.cancel("orphan")
    assert after.status is RunStatus.CANCELLED


async def test_a_run_cancelled_while_nobody_held_it_ends_cancelled_when_claimed(cwf: Workflow) -> None:
    calls = Calls()

    @cwf.workflow(id="late")
    async def late() -> None:
        calls("late")

    store = await cwf.get_store()
    await late.start()
    lease = await store.claim_run("late", "a-host-far-away:1:2:3", 60.0)
    assert lease is not None
    await cwf.cancel("late")  # a live owner elsewhere: the request waits for it
    await store.renew_lease(lease, 0)  # then that owner vanished without seeing it
    with pytest.raises(RunCancelled):
        await late()
    assert calls.log == []
    run = await cwf.get_run("late")
    assert run is not None and run.status is RunStatus.CANCELLED


# -- defect 4: resume checks before it changes anything ----------------------------------------


async def test_resume_of_a_workflow_this_code_lacks_raises_and_changes_nothing(checked: CheckedStore) -> None:
    one = Workflow("one", db=checked, default_retries=0)

    @one.workflow(id="theirs")
    async def theirs() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await theirs()
    other = Workflow("other", db=checked)
    with pytest.raises(ConfigurationError, match="'theirs'") as caught:
        await other.resume("theirs")
    assert caught.value.run_id == "theirs"
    run = await other.get_run("theirs")
    assert run is not None and run.status is RunStatus.FAILED and run.error is not None


# -- defect 5: waits say what they wait for ------------------------------------------------------


async def test_a_parked_signal_wait_says_which_signal(cwf: Workflow) -> None:
    @cwf.workflow(id="asks")
    async def asks() -> Any:
        return await cwf.signal("approval")

    await asks.start()
    worker = asyncio.ensure_future(cwf.run_worker(poll_interval=0.02))
    try:
        run = await until_status(cwf, "asks", RunStatus.WAITING)
        assert activity_of(run) == {"signal": "approval", "timeout": None}
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_an_in_process_signal_wait_says_which_signal_and_its_timeout(cwf: Workflow) -> None:
    @cwf.workflow(id="asks-soon")
    async def asks_soon() -> Any:
        return await cwf.signal("approval", timeout=30)

    calling = asyncio.ensure_future(asks_soon())
    try:
        run = await until_status(cwf, "asks-soon", RunStatus.WAITING)
        assert activity_of(run) == {"signal": "approval", "timeout": 30}
        await cwf.complete("asks-soon", "approval", "yes")
        assert await calling == "yes"
    finally:
        calling.cancel()
    run = await cwf.get_run("asks-soon")
    assert run is not None and run.status is RunStatus.COMPLETED and run.activity is None


async def test_a_sleep_says_when_it_wakes(cwf: Workflow) -> None:
    @cwf.workflow(id="naps")
    async def naps() -> None:
        await cwf.sleep(30)

    calling = asyncio.ensure_future(naps())
    try:
        run = await until_status(cwf, "naps", RunStatus.WAITING)
        data = activity_of(run)
        assert data is not None and abs(data["sleep_until"] - (time.time() + 30)) < 5
        assert run.wake_at == data["sleep_until"]
    finally:
        calling.cancel()
        await asyncio.gather(calling, return_exceptions=True)


# -- one retry budget for a run's store writes --------------------------------------------------


class Unavailable(InMemoryStore):
    """A store whose checkpoint writes always fail as unavailable."""

    attempts = 0

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        self.attempts += 1
        raise StoreUnavailable("the store is down")


async def test_a_checkpoint_write_that_keeps_failing_raises_after_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(context_module, "STORE_WRITE_BUDGET", 0.3)
    store = Unavailable()
    wf = Workflow("down", db=store, default_retries=0)

    @wf.task
    async def work() -> int:
        return 1

    @wf.workflow(id="down")
    async def down() -> int:
        return await work()

    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await down()
    assert time.monotonic() - started < 5  # bounded: 0.3 s of retries, not 36 attempts
    assert 2 <= store.attempts <= 8


# -- errors say who and what ---------------------------------------------------------------------


async def test_a_task_timeout_says_which_task_step_and_limit(cwf: Workflow) -> None:
    @cwf.task(timeout=0.05)
    async def stuck() -> None:
        await asyncio.sleep(10)

    @cwf.workflow(id="stuck")
    async def stuck_flow() -> None:
        await stuck()

    with pytest.raises(
        StepTimeout, match=r"task 'stuck' \(run 'stuck', step 'stuck'\).*0.05 seconds"
    ) as caught:
        await stuck_flow()
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.run_id, caught.value.step_key) == ("stuck", "stuck")


async def test_run_in_progress_shows_the_lease_as_a_time_not_an_epoch(cwf: Workflow) -> None:
    @cwf.workflow(id="busy")
    async def busy() -> None:
        pass

    store = await cwf.get_store()
    await busy.start()
    assert await store.claim_run("busy", "a-host-far-away:1:2:3", 60.0) is not None
    with pytest.raises(RunInProgress) as caught:
        await busy.call("busy", wait=False)
    message = str(caught.value)
    assert "UTC" in message and "a-host-far-away" in message
    assert str(int(time.time()))[:6] not in message  # no epoch number
    assert caught.value.run_id == "busy" and caught.value.owner == "a-host-far-away:1:2:3"


async def test_wait_for_a_run_no_worker_takes_raises_a_durable_timeout_with_a_hint(cwf: Workflow) -> None:
    @cwf.workflow(id="queued")
    async def queued() -> None:
        pass

    await queued.start()
    with pytest.raises(WaitTimeout, match="is a worker running") as caught:
        await cwf.wait_for("queued", timeout=0.05)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.run_id == "queued" and caught.value.status is RunStatus.PENDING


def test_activity_is_plain_json() -> None:
    from durable import _lifecycle

    assert json.loads(_lifecycle.in_flight({"a": 2}) or "") == {"steps": [{"key": "a", "attempt": 2}]}
    assert _lifecycle.in_flight({}) is None


# -- identity: the child-run namespace is reserved (issue 16, item 9) ---------------------------


async def test_a_caller_id_in_the_child_namespace_is_refused_before_anything_is_stored(cwf: Workflow) -> None:
    @cwf.workflow(id="{name}")
    async def named(name: str) -> str:
        return name

    for call in (
        named("p/durable:child@x"),
        named.run("q/durable:child@y", name="z"),
        named.start("r/durable:a"),
    ):
        with pytest.raises(ConfigurationError, match="reserved") as caught:
            await call
        assert caught.value.run_id is not None and "/durable:" in caught.value.run_id
    assert await cwf.list_runs() == []


async def test_child_runs_still_get_their_ids(cwf: Workflow) -> None:
    @cwf.workflow()
    async def kid() -> int:
        return 7

    @cwf.workflow(id="mom")
    async def mom() -> int:
        return await kid()

    assert await mom() == 7
    assert sorted(r.run_id for r in await cwf.list_runs()) == ["mom", "mom/durable:child@kid"]


async def test_cancelling_a_completed_run_changes_nothing(cwf: Workflow) -> None:
    @cwf.workflow(id="done")
    async def done() -> int:
        return 1

    await done()
    before = await cwf.get_run("done")
    after = await cwf.cancel("done")
    assert after == before and not after.cancel_requested
