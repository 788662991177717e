"""The lease heartbeat: renewals while a run's body runs, and what a renewal can stop it for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from durable import Workflow
from durable.errors import LeaseLost, RunCancelled
from durable.store import Lease, RunRecord

LEASE = 0.3
"""Seconds: a renewal is due every 0.1 s."""


@pytest.fixture
async def app(tmp_path: Any) -> AsyncIterator[tuple[Workflow, list[Lease]]]:
    """A workflow on a SQLite store whose lease renewals are recorded."""
    wf = Workflow("beats", db=f"sqlite:///{tmp_path}/beats.db", default_retries=0, lease_seconds=LEASE)
    store = await wf.get_store()
    renewals: list[Lease] = []
    renew = store.renew_lease

    async def recorded(lease: Lease, lease_seconds: float, **options: Any) -> RunRecord:
        renewals.append(lease)
        return await renew(lease, lease_seconds, **options)

    store.renew_lease = recorded  # type: ignore[method-assign]
    yield wf, renewals
    await wf.close()


async def test_a_long_step_keeps_its_lease_and_renewals_stop_with_the_run(
    app: tuple[Workflow, list[Lease]],
) -> None:
    wf, renewals = app

    @wf.task
    async def slow() -> str:
        await asyncio.sleep(LEASE * 2.5)  # well past the lease it started with
        return "done"

    @wf.workflow(id="long")
    async def long() -> str:
        return await slow()

    assert await long() == "done"
    assert len(renewals) >= 3 and {lease.run_id for lease in renewals} == {"long"}
    ended = len(renewals)
    await asyncio.sleep(LEASE)  # three more intervals: nothing may renew a finished run
    assert len(renewals) == ended


async def test_a_short_run_is_never_renewed(app: tuple[Workflow, list[Lease]]) -> None:
    wf, renewals = app

    @wf.workflow(id="short")
    async def short() -> int:
        return 1

    assert [await short() for _ in range(3)] == [1, 1, 1]
    await asyncio.sleep(LEASE)
    assert renewals == []


async def running_forever(wf: Workflow, run_id: str) -> asyncio.Future[None]:
    """Run ``run_id``, whose one step waits forever; returns once that step has started."""
    started = asyncio.Event()

    @wf.task
    async def wait_forever() -> None:
        started.set()
        await asyncio.sleep(60)

    @wf.workflow(id=run_id)
    async def forever() -> None:
        await wait_forever()

    run = asyncio.ensure_future(forever())
    await started.wait()
    return run


async def test_a_cancel_requested_elsewhere_stops_the_run_at_its_next_renewal(
    app: tuple[Workflow, list[Lease]],
) -> None:
    wf, renewals = app
    run = await running_forever(wf, "doomed")
    store = await wf.get_store()
    await store.request_cancel("doomed")  # as another process would: only the flag is set
    with pytest.raises(RunCancelled, match="'doomed'"):
        await asyncio.wait_for(run, LEASE * 10)
    assert renewals  # it was the renewal that read the flag


async def test_a_lease_taken_over_elsewhere_stops_the_run(app: tuple[Workflow, list[Lease]]) -> None:
    wf, _ = app
    run = await running_forever(wf, "taken")
    store = await wf.get_store()
    # Another executor's claim after expiry, simulated: the owner's token becomes stale.
    record = await store.get_run("taken")
    assert record is not None and record.owner is not None
    stale = Lease("taken", record.owner, record.lease_token, 0.0)
    await store.update_run(stale, record.status, release=True)
    assert await store.claim_run("taken", "another-executor", 30) is not None
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(run, LEASE * 10)
