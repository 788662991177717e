"""A run's activity: what the core says the run is doing, kept verbatim by the store."""

from __future__ import annotations

from dataclasses import replace

import pytest

from durable.errors import LeaseLost
from durable.store import ErrorInfo, RunQuery, RunStatus, Store, accepts_activity
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import OWNER_A, OWNER_B, get, make_run, owned_run

IN_FLIGHT = '{"steps": [{"key": "charge@order-42", "attempt": 2}, {"key": "mail", "attempt": 1}]}'
WAITING = '{"signal": "approval ✓ 日本語 \\"quoted\\"", "timeout": 30.0}'
SLEEPING = '{"sleep_until": 1800000000.5}'


def takes_activity(store: Store) -> None:
    if not accepts_activity(store):
        pytest.fail(
            f"{type(store).__qualname__}.update_run and .renew_lease must take an activity= keyword "
            "argument (durable.store.Store; stores written before durable 0.4 lack it, and the core "
            "then shows no activity for their runs)",
            pytrace=False,
        )


class ActivityContract(ContractBase, contract=True):
    """``RunRecord.activity``: written by ``create_run``, ``update_run`` and ``renew_lease``,
    cleared by ``claim_run`` and ``reset_run``, left alone by every other write. Required of every
    store (no capability gates it): the CLI and the viewer show it for running and waiting runs."""

    async def test_an_activity_given_at_creation_is_returned_by_get_run_and_list_runs(
        self, store: Store
    ) -> None:
        busy = replace(make_run("busy", owner=OWNER_A, created_at=1_700_000_001.0), activity=IN_FLIGHT)
        idle = make_run("idle", created_at=1_700_000_000.0)
        assert await store.create_run(busy) == (busy, True)
        assert await store.create_run(idle) == (idle, True)
        assert (await get(store, "busy")).activity == IN_FLIGHT
        assert (await get(store, "idle")).activity is None
        assert [(run.run_id, run.activity) for run in await store.list_runs(RunQuery())] == [
            ("busy", IN_FLIGHT),
            ("idle", None),
        ]

    async def test_update_run_writes_the_activity_as_given_and_none_clears_it(self, store: Store) -> None:
        takes_activity(store)
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.RUNNING, activity=IN_FLIGHT)
        assert (await get(store, "run-1")).activity == IN_FLIGHT
        await store.update_run(lease, RunStatus.WAITING, wake_at=1_800_000_000.5, activity=SLEEPING)
        assert (await get(store, "run-1")).activity == SLEEPING
        await store.update_run(lease, RunStatus.WAITING, activity=WAITING, release=True)
        assert (await get(store, "run-1")).activity == WAITING
        taken = await store.claim_run("run-1", OWNER_B, 30.0)
        assert taken is not None
        await store.update_run(taken, RunStatus.RUNNING, activity=IN_FLIGHT)
        await store.update_run(taken, RunStatus.RUNNING, activity=None)
        assert (await get(store, "run-1")).activity is None
        await store.update_run(taken, RunStatus.RUNNING, activity=IN_FLIGHT)
        await store.update_run(taken, RunStatus.COMPLETED, result='"done"', release=True)
        assert (await get(store, "run-1")).activity is None, "update_run without activity= writes None"

    async def test_renewing_with_an_activity_replaces_it_and_renewing_without_one_keeps_it(
        self, store: Store
    ) -> None:
        takes_activity(store)
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.RUNNING, activity=IN_FLIGHT)
        renewed = await store.renew_lease(lease, 30.0, activity=WAITING)
        assert renewed.activity == WAITING and (await get(store, "run-1")).activity == WAITING
        renewed = await store.renew_lease(lease, 30.0)
        assert renewed.activity == WAITING and (await get(store, "run-1")).activity == WAITING
        given_back = await store.renew_lease(lease, 0)
        assert given_back.activity == WAITING and (await get(store, "run-1")).activity == WAITING

    async def test_claiming_a_run_clears_its_activity(self, store: Store) -> None:
        takes_activity(store)
        released = await owned_run(store, "released")
        await store.update_run(released, RunStatus.WAITING, activity=WAITING, release=True)
        given_back = await owned_run(store, "given-back")
        await store.renew_lease(given_back, 0, activity=IN_FLIGHT)
        for run_id in ("released", "given-back"):
            assert (await get(store, run_id)).activity is not None
            assert await store.claim_run(run_id, OWNER_B, 30.0) is not None
            assert (await get(store, run_id)).activity is None, f"{run_id}: claim_run clears the activity"

    async def test_resetting_a_run_clears_its_activity(self, store: Store) -> None:
        takes_activity(store)
        error = ErrorInfo("builtins.RuntimeError", "boom").to_json()
        for run_id, status in (("failed", RunStatus.FAILED), ("cancelled", RunStatus.CANCELLED)):
            lease = await owned_run(store, run_id)
            await store.update_run(lease, status, error=error, activity=IN_FLIGHT, release=True)
            reset = await store.reset_run(run_id)
            assert reset is not None and (reset.status, reset.activity) == (RunStatus.PENDING, None)
            assert (await get(store, run_id)).activity is None

    async def test_a_stale_lease_can_change_no_activity(self, store: Store) -> None:
        takes_activity(store)
        stale = await owned_run(store, "run-1")
        await store.update_run(stale, RunStatus.RUNNING, activity=IN_FLIGHT, release=True)
        current = await store.claim_run("run-1", OWNER_B, 30.0)
        assert current is not None and current.token == stale.token + 1
        await store.renew_lease(current, 30.0, activity=WAITING)
        with pytest.raises(LeaseLost):
            await store.renew_lease(stale, 30.0, activity=SLEEPING)
        with pytest.raises(LeaseLost):
            await store.update_run(stale, RunStatus.RUNNING, activity=SLEEPING)
        with pytest.raises(LeaseLost):
            await store.update_run(stale, RunStatus.RUNNING)
        run = await get(store, "run-1")
        assert (run.activity, run.owner, run.lease_token) == (WAITING, OWNER_B, current.token)

    async def test_cancel_requests_and_signal_deliveries_leave_the_activity_alone(self, store: Store) -> None:
        takes_activity(store)
        live = await owned_run(store, "live")
        await store.update_run(live, RunStatus.RUNNING, activity=IN_FLIGHT)
        parked = await owned_run(store, "parked")
        await store.update_run(parked, RunStatus.WAITING, activity=WAITING, release=True)
        await store.send_signal("parked", "approval", "", '"yes"')
        assert (await get(store, "parked")).activity == WAITING
        flagged = await store.request_cancel("live")
        assert flagged is not None and (flagged.status, flagged.activity) == (RunStatus.RUNNING, IN_FLIGHT)
        ended = await store.request_cancel("parked")
        assert ended is not None and (ended.status, ended.activity) == (RunStatus.CANCELLED, WAITING)
        assert [(await get(store, run_id)).activity for run_id in ("live", "parked")] == [IN_FLIGHT, WAITING]
