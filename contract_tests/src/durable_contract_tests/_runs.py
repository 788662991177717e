"""Runs: creation, status transitions, cancellation and reset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import replace

from durable.store import ErrorInfo, Lease, RunStatus, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import OWNER_A, get, lease_of, make_run, make_step, owned_run
from durable_contract_tests._matrix import CLOCKS

CREATORS = 50


class RunContract(ContractBase, contract=True):
    """``create_run``, ``get_run``, ``update_run``, ``request_cancel`` and ``reset_run``."""

    async def test_a_created_run_is_read_back_field_for_field(self, store: Store) -> None:
        run = replace(
            make_run("run-1", "orders", created_at=1_700_000_000.25, deadline=1_700_000_600.5),
            parent_run_id="parent-run",
            inputs='{"order_id": "42", "items": [1, 2]}',
        )
        stored, created = await store.create_run(run)
        assert (stored, created) == (run, True)
        assert await store.get_run("run-1") == run

    async def test_an_unknown_run_is_none(self, store: Store) -> None:
        assert await store.get_run("no-such-run") is None

    async def test_a_run_created_with_a_lease_is_owned_by_its_creator(self, store: Store) -> None:
        run = make_run("run-1", owner=OWNER_A)
        stored, created = await store.create_run(run)
        assert created and stored == run
        assert (stored.status, stored.owner, stored.lease_token) == (RunStatus.RUNNING, OWNER_A, 1)
        await store.save_step(lease_of(run), make_step("run-1", "a"))
        assert len(await store.load_steps("run-1")) == 1

    async def test_creating_an_existing_run_returns_the_stored_one_unchanged(self, store: Store) -> None:
        first = make_run("run-1", inputs='{"v": 1}')
        await store.create_run(first)
        stored, created = await store.create_run(make_run("run-1", "other-workflow", inputs='{"v": 2}'))
        assert (stored, created) == (first, False)
        assert await store.get_run("run-1") == first

    async def test_of_many_concurrent_creators_exactly_one_creates_the_run(self, store: Store) -> None:
        candidates = [make_run("contested", inputs=f'{{"creator": {i}}}') for i in range(CREATORS)]
        outcomes = await asyncio.gather(*(store.create_run(run) for run in candidates))
        winners = [stored for stored, created in outcomes if created]
        assert len(winners) == 1
        assert winners[0] in candidates
        assert [stored for stored, _ in outcomes] == [winners[0]] * CREATORS
        assert await store.get_run("contested") == winners[0]

    async def test_update_run_writes_status_result_error_and_wake_at_as_given(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.WAITING, wake_at=1_800_000_000.5)
        run = await get(store, "run-1")
        assert (run.status, run.wake_at, run.result, run.error) == (
            RunStatus.WAITING,
            1_800_000_000.5,
            None,
            None,
        )
        error = ErrorInfo("builtins.ValueError", "bad", "Traceback ...").to_json()
        await store.update_run(lease, RunStatus.FAILED, error=error)
        run = await get(store, "run-1")
        # None is written too: the wake time of the earlier wait is gone.
        assert (run.status, run.wake_at, run.result, run.error) == (RunStatus.FAILED, None, None, error)
        assert run.error_info == ErrorInfo("builtins.ValueError", "bad", "Traceback ...")
        await store.update_run(lease, RunStatus.COMPLETED, result='{"total": 3}')
        run = await get(store, "run-1")
        assert (run.status, run.result, run.error) == (RunStatus.COMPLETED, '{"total": 3}', None)

    async def test_update_run_keeps_the_lease_unless_released(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.WAITING)
        run = await get(store, "run-1")
        assert (run.owner, run.lease_token) == (OWNER_A, lease.token)
        assert run.lease_is_live(time.time())

    async def test_update_run_moves_updated_at_forward(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        before = (await get(store, "run-1")).updated_at
        await asyncio.sleep(0.01)
        await store.update_run(lease, RunStatus.WAITING)
        assert (await get(store, "run-1")).updated_at > before

    async def test_every_write_that_changes_a_run_sets_updated_at_to_now_and_a_renewal_leaves_it(
        self, store: Store
    ) -> None:
        t0 = 1_700_000_000.0  # the caller's times, long past: each write below must move updated_at
        await store.create_run(make_run("run-1", created_at=t0))
        assert (await get(store, "run-1")).updated_at == t0, "create_run must keep the caller's updated_at"

        async def sets_now(what: str, write: Awaitable[object]) -> object:
            before = time.time()
            done = await write
            updated = (await get(store, "run-1")).updated_at
            assert before - CLOCKS <= updated <= time.time() + CLOCKS, (
                f"{what} left updated_at at {updated!r}; it must set it to the store's clock's now "
                f"(about {before!r})"
            )
            return done

        lease = await sets_now("claim_run", store.claim_run("run-1", OWNER_A, 60.0))
        assert isinstance(lease, Lease)
        claimed = (await get(store, "run-1")).updated_at
        await asyncio.sleep(0.05)
        renewed = await store.renew_lease(lease, 60.0)
        assert renewed.updated_at == claimed, (
            f"renew_lease moved updated_at from {claimed!r} to {renewed.updated_at!r}: a heartbeat is not "
            "a change (listings' updated_before and `durable runs prune` go by updated_at)"
        )
        await sets_now("update_run", store.update_run(lease, RunStatus.WAITING, release=True))
        await sets_now("send_signal (to a waiting run)", store.send_signal("run-1", "go", "", "1"))
        await sets_now("request_cancel", store.request_cancel("run-1"))
        await sets_now("reset_run (of a cancelled run)", store.reset_run("run-1"))

    async def test_a_status_change_leaves_inputs_and_identity_alone(self, store: Store) -> None:
        lease = await owned_run(store, "run-1", "orders")
        created = await get(store, "run-1")
        await store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True)
        run = await get(store, "run-1")
        same = ("run_id", "workflow", "inputs", "inputs_digest", "created_at", "deadline", "parent_run_id")
        assert [getattr(run, f) for f in same] == [getattr(created, f) for f in same]

    async def test_cancelling_an_idle_run_cancels_it_at_once(self, store: Store) -> None:
        await store.create_run(make_run("run-1"))
        cancelled = await store.request_cancel("run-1")
        assert cancelled is not None
        assert (cancelled.status, cancelled.cancel_requested) == (RunStatus.CANCELLED, True)
        assert await store.get_run("run-1") == cancelled

    async def test_cancelling_a_run_with_a_live_owner_only_sets_the_flag_its_owner_reads_on_renewal(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        flagged = await store.request_cancel("run-1")
        assert flagged is not None
        assert (flagged.status, flagged.cancel_requested, flagged.owner) == (RunStatus.RUNNING, True, OWNER_A)
        renewed = await store.renew_lease(lease, 30.0)
        assert renewed.cancel_requested is True

    async def test_cancelling_a_completed_run_keeps_it_completed(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.COMPLETED, result='"r"', release=True)
        after = await store.request_cancel("run-1")
        assert after is not None and (after.status, after.result) == (RunStatus.COMPLETED, '"r"')

    async def test_cancelling_an_unknown_run_returns_none(self, store: Store) -> None:
        assert await store.request_cancel("no-such-run") is None
        assert await store.get_run("no-such-run") is None

    async def test_reset_makes_a_cancelled_run_pending_and_keeps_its_checkpoints(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        step = make_step("run-1", "a")
        await store.save_step(lease, step)
        error = ErrorInfo("durable.errors.RunCancelled", "cancelled").to_json()
        await store.update_run(lease, RunStatus.CANCELLED, error=error, wake_at=5.0, release=True)
        await store.request_cancel("run-1")
        reset = await store.reset_run("run-1")
        assert reset is not None
        assert (reset.status, reset.cancel_requested, reset.error, reset.wake_at) == (
            RunStatus.PENDING,
            False,
            None,
            None,
        )
        assert await store.get_run("run-1") == reset
        assert await store.load_steps("run-1") == [step]
        assert await store.claim_run("run-1", "owner-b", 30.0) is not None

    async def test_reset_makes_a_failed_run_pending(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.FAILED, error=ErrorInfo("E", "m").to_json(), release=True)
        reset = await store.reset_run("run-1")
        assert reset is not None and (reset.status, reset.error) == (RunStatus.PENDING, None)

    async def test_resetting_an_unknown_run_returns_none(self, store: Store) -> None:
        assert await store.reset_run("no-such-run") is None
        assert await store.get_run("no-such-run") is None
