"""How many statements each hot operation sends: one per new checkpoint, one per journal load."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from postgres_test_kit import owned

from durable.store import Lease, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio

STATEMENT_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


class CountingConnection:
    """Counts the statements sent through a pooled connection."""

    def __init__(self, conn: Any, counter: Counter[str]) -> None:
        self._conn, self._counter = conn, counter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name in STATEMENT_METHODS:

            async def counted(*args: Any, **kwargs: Any) -> Any:
                self._counter["statements"] += 1
                return await attr(*args, **kwargs)

            return counted
        return attr


class CountingPool:
    def __init__(self, pool: Any, counter: Counter[str]) -> None:
        self._pool, self._counter = pool, counter

    async def acquire(self, **kwargs: Any) -> CountingConnection:
        self._counter["acquires"] += 1
        return CountingConnection(await self._pool.acquire(**kwargs), self._counter)

    async def release(self, conn: CountingConnection) -> None:
        await self._pool.release(conn._conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


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
    counter: Counter[str] = Counter()
    real_pool = store._pool
    store._pool = CountingPool(real_pool, counter)  # type: ignore[assignment]
    try:
        for i in range(20):
            new = step(run_id, f"s{i}")
            assert await store.save_step(lease, new) == new
        # One acquire: the step batcher gives back the connection it held from the replaced pool
        # and keeps the new one for every later checkpoint.
        assert counter == Counter(statements=20, acquires=1)
        counter.clear()
        assert len(await store.load_steps(run_id)) == 21
        assert counter == Counter(statements=1, acquires=1)
        counter.clear()
        await store.create_run(owned(f"{run_id}-second"))
        await store.send_signal(run_id, "go", "", "1")
        assert counter == Counter(statements=2, acquires=2)
    finally:
        store._pool = real_pool
