"""How many statements each hot operation sends: one per new checkpoint, one per journal load."""

from __future__ import annotations

import time

import pytest
from postgres_test_kit import owned, recording

from durable.store import Lease, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio


def step(run_id: str, key: str) -> StepRecord:
    now = time.time()
    return StepRecord(run_id, key, "task", "args", StepStatus.COMPLETED, '"ok"', None, 1, now, now)


async def test_a_new_checkpoint_and_a_journal_load_are_one_statement_each(
    store: PostgresStore, unique: str
) -> None:
    run_id = f"count-{unique}"
    run, _ = await store.create_run(owned(run_id))
    lease = Lease(run_id, "me", 1, run.lease_expires_at or 0.0)
    await store.save_step(lease, step(run_id, "warm-up"))  # asyncpg prepares each statement once
    await store.load_steps(run_id)
    with recording(store) as pool:
        for i in range(20):
            new = step(run_id, f"s{i}")
            assert await store.save_step(lease, new) == new
        # One acquire: the step batcher gives back the connection it held from the replaced pool
        # and keeps the new one for every later checkpoint.
        assert (len(pool.statements), pool.acquires) == (20, 1)
    with recording(store) as pool:
        assert len(await store.load_steps(run_id)) == 21
        assert (len(pool.statements), pool.acquires) == (1, 1)
    with recording(store) as pool:
        await store.create_run(owned(f"{run_id}-second"))
        await store.send_signal(run_id, "go", "", "1")
        assert (len(pool.statements), pool.acquires) == (2, 2)
