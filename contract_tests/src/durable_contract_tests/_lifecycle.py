"""The run lifecycle: every status change a store makes is one ``durable._lifecycle`` allows,
claims and cancels take exactly the runs it says, and a lease can be given back."""

from __future__ import annotations

import time

import pytest

from durable._lifecycle import CLAIMABLE
from durable.errors import LeaseLost
from durable.store import Lease, RunStatus, Store
from durable_contract_tests._base import ContractBase, StoreHarness
from durable_contract_tests._kit import OWNER_A, OWNER_B, get, make_step, owned_run
from durable_contract_tests._matrix import (
    CANCELLABLE,
    CLOCKS,
    RESETTABLE,
    Change,
    Operations,
    build,
    differences,
    record_after,
)

GIVEN_BACK = [RunStatus.RUNNING, RunStatus.WAITING]
"""The statuses an owner gives its lease back in: executing, or waiting in process."""


async def owned_in(store: Store, status: RunStatus) -> Lease:
    """A run ``run-1`` owned by ``OWNER_A`` with a live lease, in ``status``."""
    lease = await owned_run(store, "run-1")
    if status is not RunStatus.RUNNING:
        await store.update_run(lease, status)
    return lease


class LifecycleContract(ContractBase, contract=True):
    """``claim_run``, ``request_cancel``, ``reset_run``, ``renew_lease`` and ``update_run`` over
    runs in every state (``_matrix``), against ``durable._lifecycle``. Required of every store
    (no capability gates it): the engine, workers and ``cancel()`` rely on each of these."""

    @pytest.mark.parametrize("status", GIVEN_BACK)
    async def test_giving_a_lease_back_keeps_the_owner_and_the_status_and_ends_the_lease(
        self, store: Store, status: RunStatus
    ) -> None:
        lease = await owned_in(store, status)
        before = await get(store, "run-1")
        returned = await store.renew_lease(lease, 0)
        after = await get(store, "run-1")
        assert returned == after
        assert after == record_after(before, after, lease_expires_at=after.lease_expires_at)
        assert (after.status, after.owner, after.lease_token) == (status, OWNER_A, lease.token)
        assert not after.lease_is_live(time.time() + CLOCKS), (
            f"the lease still expires at {after.lease_expires_at!r}"
        )

    @pytest.mark.parametrize("status", GIVEN_BACK)
    async def test_a_lease_given_back_is_claimed_at_once_by_another_owner_with_the_next_token(
        self, store: Store, status: RunStatus
    ) -> None:
        lease = await owned_in(store, status)
        await store.renew_lease(lease, 0)
        taken = await store.claim_run("run-1", OWNER_B, 30.0)
        assert taken is not None, "a run whose lease was given back must be claimable at once"
        assert (taken.owner, taken.token) == (OWNER_B, lease.token + 1)
        run = await get(store, "run-1")
        assert (run.status, run.owner, run.lease_token) == (RunStatus.RUNNING, OWNER_B, lease.token + 1)

    @pytest.mark.parametrize("status", GIVEN_BACK)
    async def test_a_lease_given_back_can_write_nothing_once_the_run_is_claimed_again(
        self, store: Store, status: RunStatus
    ) -> None:
        lease = await owned_in(store, status)
        await store.renew_lease(lease, 0)
        assert await store.claim_run("run-1", OWNER_B, 30.0) is not None
        snapshot = await get(store, "run-1")
        with pytest.raises(LeaseLost):
            await store.renew_lease(lease, 30.0)
        with pytest.raises(LeaseLost):
            await store.update_run(lease, RunStatus.COMPLETED, result='"old owner"', release=True)
        with pytest.raises(LeaseLost):
            await store.save_step(lease, make_step("run-1", "late"))
        assert await get(store, "run-1") == snapshot
        assert await store.load_steps("run-1") == []

    async def test_a_claim_succeeds_exactly_for_claimable_runs_nobody_holds_a_live_lease_on(
        self, store: Store
    ) -> None:
        matrix = await build(Operations(store))
        wrong = []
        for run_id, before in matrix.runs.items():
            live = before.lease_is_live(time.time() + CLOCKS)
            claimable = before.status in CLAIMABLE and not live
            lease = await store.claim_run(run_id, OWNER_B, 30.0)
            after = await get(store, run_id)
            if lease is None:
                if claimable:
                    wrong.append(
                        f"{run_id!r}: refused, though it is {before.status.value} with no live lease"
                    )
                elif after != before:
                    wrong.append(f"{run_id!r}: refused, yet the run changed to {after!r}")
                continue
            if not claimable:
                why = "a live lease" if live else f"status {before.status.value}"
                wrong.append(f"{run_id!r}: claimed, though it has {why}")
                continue
            expected = record_after(
                before,
                after,
                status=RunStatus.RUNNING,
                owner=OWNER_B,
                lease_token=before.lease_token + 1,
                lease_expires_at=lease.expires_at,
                wake_at=None,
                activity=None,
            )
            if (lease.owner, lease.token) != (OWNER_B, before.lease_token + 1) or after != expected:
                wrong.append(f"{run_id!r}: claimed as {lease!r}, leaving {after!r}; expected {expected!r}")
        assert not wrong, (
            "claim_run must take exactly the runs in CLAIMABLE with no live lease:\n" + "\n".join(wrong)
        )

    async def test_a_cancel_ends_every_unfinished_run_without_a_live_lease_at_once_and_only_flags_the_others(
        self, store: Store
    ) -> None:
        matrix = await build(Operations(store))
        wrong = []
        for run_id, before in matrix.runs.items():
            ends = before.status in CANCELLABLE and not before.lease_is_live(time.time() + CLOCKS)
            returned = await store.request_cancel(run_id)
            after = await get(store, run_id)
            status = RunStatus.CANCELLED if ends else before.status
            expected = record_after(before, after, status=status, cancel_requested=True)
            if after != expected:
                wrong.append(f"{run_id!r}: left {after!r}; expected {expected!r}")
            elif returned != after:
                wrong.append(f"{run_id!r}: returned {returned!r}, not the run after the change")
        assert not wrong, (
            "request_cancel must set cancel_requested, and make exactly the pending, running, waiting "
            "and failed runs nobody holds a live lease on cancelled at once:\n" + "\n".join(wrong)
        )

    async def test_a_reset_makes_exactly_the_failed_and_cancelled_runs_pending_and_leaves_the_others_alone(
        self, store: Store
    ) -> None:
        matrix = await build(Operations(store))
        wrong = []
        for run_id, before in matrix.runs.items():
            returned = await store.reset_run(run_id)
            after = await get(store, run_id)
            if before.status in RESETTABLE:
                expected = record_after(
                    before,
                    after,
                    status=RunStatus.PENDING,
                    cancel_requested=False,
                    error=None,
                    wake_at=None,
                    activity=None,
                )
            else:
                expected = before
            if after != expected:
                wrong.append(f"{run_id!r}: {differences(after, expected)}")
            elif returned != after:
                wrong.append(f"{run_id!r}: returned {returned!r}, not the run after the reset")
        assert not wrong, (
            "reset_run must make a failed or cancelled run pending (clearing cancel_requested, error, "
            "wake_at and activity) and return a run in any other status unchanged:\n" + "\n".join(wrong)
        )

    async def test_every_status_change_a_store_makes_is_one_the_lifecycle_allows(
        self, stores: StoreHarness
    ) -> None:
        changes: list[Change] = []
        for phase in ("claim", "cancel", "reset", "signal"):
            # A store of its own for each phase: the matrix is built anew, on fresh data. The build
            # takes the same steps every time, so only the first one's changes are recorded.
            ops = Operations(await stores.new(), record=phase == "claim")
            matrix = await build(ops)
            ops.record = True
            for run_id, run in matrix.runs.items():
                if phase == "claim":
                    lease = await ops.claim(run_id, OWNER_B)
                    if lease is not None:
                        await ops.renew(lease, 30.0)
                        await ops.update(lease, RunStatus.COMPLETED, result='"done"', release=True)
                elif phase == "cancel":
                    await ops.cancel(run_id)
                elif phase == "reset" and run.status in RESETTABLE:
                    await ops.reset(run_id)
                elif phase == "signal":
                    await ops.signal(run_id)
            changes.extend(ops.changes)
        unlisted = [str(change) for change in changes if not change.listed]
        assert len(changes) > 4 * len(matrix.runs)
        assert not unlisted, (
            "these store operations made status changes durable._lifecycle.TRANSITIONS does not list "
            "(for that method and actor):\n" + "\n".join(unlisted)
        )
