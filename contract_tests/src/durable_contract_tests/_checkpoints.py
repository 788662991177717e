"""Step checkpoints: round trip, absence, first completed writer wins, failures are replaced."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from durable.errors import LeaseLost
from durable.store import Lease, RunStatus, StepStatus, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import make_step, owned_run

WRITERS = 50


class CheckpointContract(ContractBase, contract=True):
    """``save_step``, ``save_steps`` and ``load_steps``."""

    async def test_a_saved_step_is_loaded_back_field_for_field(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        step = make_step("run-1", "fetch", '{"b": [1, 2.5, "x"], "a": null}', attempts=3)
        assert await store.save_step(lease, step) == step
        assert await store.load_steps("run-1") == [step]

    async def test_a_run_without_checkpoints_loads_no_steps(self, store: Store) -> None:
        await owned_run(store, "run-1")
        assert await store.load_steps("run-1") == []
        assert await store.load_steps("no-such-run") == []

    async def test_a_missing_step_differs_from_a_step_that_stored_null(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        stored_null = make_step("run-1", "returns-none", "null")
        await store.save_step(lease, stored_null)
        steps = {step.key: step for step in await store.load_steps("run-1")}
        assert set(steps) == {"returns-none"}
        assert steps["returns-none"].result == "null"
        assert steps["returns-none"].status is StepStatus.COMPLETED

    async def test_steps_load_in_the_order_they_finished(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        base = 1_700_000_000.0
        # Saved out of order, and started in the reverse order (steps run in parallel: the first
        # to start may finish last): the journal order is finished_at, not insertion or start.
        for key, offset in (("c", 3.0), ("a", 1.0), ("d", 4.0), ("b", 2.0)):
            step = replace(make_step("run-1", key, finished_at=base + offset), started_at=base - offset)
            await store.save_step(lease, step)
        loaded = await store.load_steps("run-1")
        assert [step.key for step in loaded] == ["a", "b", "c", "d"], (
            "load_steps must order checkpoints by finished_at (started_at runs the other way here)"
        )
        assert [step.started_at for step in loaded] == [base - 1.0, base - 2.0, base - 3.0, base - 4.0]

    async def test_a_completed_step_is_never_overwritten(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        first = make_step("run-1", "charge", '"first"')
        assert await store.save_step(lease, first) == first
        assert await store.save_step(lease, make_step("run-1", "charge", '"second"')) == first
        failed_later = make_step("run-1", "charge", status=StepStatus.FAILED)
        assert await store.save_step(lease, failed_later) == first
        assert await store.load_steps("run-1") == [first]

    async def test_of_many_concurrent_writers_exactly_one_wins_and_all_get_the_winner_back(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        candidates = [make_step("run-1", "race", f'"writer-{i}"') for i in range(WRITERS)]
        returned = await asyncio.gather(*(store.save_step(lease, step) for step in candidates))
        winner = returned[0]
        assert winner in candidates
        assert returned == [winner] * WRITERS
        assert await store.load_steps("run-1") == [winner]

    async def test_a_failed_step_is_replaced_by_a_later_write(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        failed = make_step("run-1", "flaky", status=StepStatus.FAILED, attempts=2)
        assert await store.save_step(lease, failed) == failed
        failed_again = make_step("run-1", "flaky", status=StepStatus.FAILED, attempts=4)
        assert await store.save_step(lease, failed_again) == failed_again
        completed = make_step("run-1", "flaky", '"finally"', attempts=1)
        assert await store.save_step(lease, completed) == completed
        assert await store.load_steps("run-1") == [completed]

    async def test_a_failed_step_keeps_its_error_and_attempts(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        failed = make_step("run-1", "flaky", status=StepStatus.FAILED, attempts=7)
        await store.save_step(lease, failed)
        [loaded] = await store.load_steps("run-1")
        assert loaded.status is StepStatus.FAILED
        assert (loaded.result, loaded.error, loaded.attempts) == (None, failed.error, 7)

    async def test_save_steps_stores_several_checkpoints_and_returns_what_is_stored(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        existing = make_step("run-1", "b", '"kept"', finished_at=1.0)
        await store.save_step(lease, existing)
        batch = [
            make_step("run-1", "a", '"a"', finished_at=2.0),
            make_step("run-1", "b", '"ignored"', finished_at=3.0),
            make_step("run-1", "c", '"c"', finished_at=4.0),
        ]
        assert await store.save_steps(lease, batch) == [batch[0], existing, batch[2]]
        assert await store.load_steps("run-1") == [existing, batch[0], batch[2]]

    async def test_a_checkpoint_with_a_stale_lease_token_raises_lease_lost_and_writes_nothing(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.RUNNING, release=True)
        newer = await store.claim_run("run-1", "owner-b", 60.0)
        assert newer is not None and newer.token == lease.token + 1
        with pytest.raises(LeaseLost):
            await store.save_step(lease, make_step("run-1", "late", '"stale"'))
        with pytest.raises(LeaseLost):
            await store.save_steps(lease, [make_step("run-1", "late2", '"stale"')])
        assert await store.load_steps("run-1") == []
        assert await store.save_step(newer, make_step("run-1", "late", '"fresh"')) is not None

    async def test_a_checkpoint_for_an_unknown_run_raises_lease_lost(self, store: Store) -> None:
        ghost = Lease("no-such-run", "owner-a", 1, 9e9)
        with pytest.raises(LeaseLost):
            await store.save_step(ghost, make_step("no-such-run", "x"))
        assert await store.load_steps("no-such-run") == []
