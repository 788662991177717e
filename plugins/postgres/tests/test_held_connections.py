"""Each batcher keeps one pooled connection across its flushes: no pool round trip per
checkpoint, the same recovery when that connection dies, nothing left checked out after
``close``, and a pool too small to spare connections still serves every call."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from postgres_test_kit import RecordingPool, owned, recording

from durable import Workflow
from durable.store import Lease, RunStatus, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio

# The backends whose last statement was a lone checkpoint (the step batcher's connection).
SAVING_BACKENDS = (
    "SELECT pid, wait_event_type FROM pg_stat_activity WHERE application_name = $1 "
    "AND starts_with(query, 'INSERT INTO ') AND position('.steps (' IN query) > 0 "
    "AND position('jsonb_array_elements' IN query) = 0"
)


def step(run_id: str, key: str) -> StepRecord:
    now = time.time()
    return StepRecord(run_id, key, "task", "args", StepStatus.COMPLETED, f'"{key}"', None, 1, now, now)


def named(pg_url: str, app: str) -> str:
    return f"{pg_url}{'&' if '?' in pg_url else '?'}application_name={app}"


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, outside the store's pool."""
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def counted(
    pg_url: str, schema_prefix: str, unique: str
) -> AsyncIterator[tuple[PostgresStore, RecordingPool]]:
    """An opened store, named ``held-<unique>`` in pg_stat_activity, whose pool counts from the start."""
    store = PostgresStore(named(pg_url, f"held-{unique}"), schema=schema_prefix)
    await store.open()
    try:
        with recording(store) as pool:
            yield store, pool
    finally:
        await store.close()


async def saving_backends(admin: asyncpg.Connection, unique: str) -> list[asyncpg.Record]:
    return list(await admin.fetch(SAVING_BACKENDS, f"held-{unique}"))


async def test_sequential_checkpoints_acquire_from_the_pool_once(
    counted: tuple[PostgresStore, RecordingPool], admin: asyncpg.Connection, unique: str
) -> None:
    store, pool = counted
    run_id = f"held-{unique}"
    await store.create_run(owned(run_id))
    lease = Lease(run_id, "me", 1, 0.0)
    before = pool.acquires
    for i in range(50):
        new = step(run_id, f"s{i}")
        assert await store.save_step(lease, new) == new
    assert pool.acquires - before == 1
    assert len(await saving_backends(admin, unique)) == 1  # one backend ran all 50
    assert [s.key for s in await store.load_steps(run_id)] == [f"s{i}" for i in range(50)]


async def run_with_step_a(store: PostgresStore, run_id: str) -> Lease:
    """A run owned by "me" whose step "a" is saved: the step batcher holds its connection."""
    await store.create_run(owned(run_id))
    lease = Lease(run_id, "me", 1, 0.0)
    await store.save_step(lease, step(run_id, "a"))
    return lease


async def test_a_held_connection_killed_while_idle_is_replaced(
    counted: tuple[PostgresStore, RecordingPool], admin: asyncpg.Connection, unique: str
) -> None:
    store, pool = counted
    run_id = f"idle-{unique}"
    lease = await run_with_step_a(store, run_id)
    [(pid, _)] = await saving_backends(admin, unique)
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    before = pool.acquires
    await store.save_step(lease, step(run_id, "b"))
    await store.save_step(lease, step(run_id, "c"))
    assert pool.acquires - before == 1  # a fresh connection, then held again
    [(new_pid, _)] = await saving_backends(admin, unique)
    assert new_pid != pid
    assert [s.key for s in await store.load_steps(run_id)] == ["a", "b", "c"]


async def test_a_held_connection_killed_mid_checkpoint_is_replaced_and_the_step_saved_once(
    counted: tuple[PostgresStore, RecordingPool], admin: asyncpg.Connection, unique: str
) -> None:
    store, pool = counted
    run_id = f"mid-{unique}"
    lease = await run_with_step_a(store, run_id)
    before = pool.acquires
    # The checkpoint's FOR SHARE waits behind this lock: its backend is killed mid-statement.
    locked = admin.transaction()
    await locked.start()
    try:
        await admin.execute(f'SELECT 1 FROM "{store.schema}".runs WHERE run_id = $1 FOR UPDATE', run_id)
        b = step(run_id, "b")
        saving = asyncio.ensure_future(store.save_step(lease, b))
        deadline = time.monotonic() + 10
        while not any(kind == "Lock" for _, kind in await saving_backends(admin, unique)):
            assert time.monotonic() < deadline, "the checkpoint never waited for the lock"
            await asyncio.sleep(0.005)
        [(pid, _)] = await saving_backends(admin, unique)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await locked.rollback()
    assert await asyncio.wait_for(saving, 30) == b
    await store.save_step(lease, step(run_id, "c"))
    assert pool.acquires - before == 1  # the retry took a fresh connection, kept for "c"
    [(new_pid, _)] = await saving_backends(admin, unique)
    assert new_pid != pid
    assert [s.key for s in await store.load_steps(run_id)] == ["a", "b", "c"]


async def test_close_gives_every_held_connection_back_even_with_writes_in_flight(
    pg_url: str, schema_prefix: str, unique: str
) -> None:
    store = PostgresStore(pg_url, schema=schema_prefix)
    await store.open()
    pool = RecordingPool(store._pool)
    # Not recording(store): it would put the closed pool back into the store after close().
    store._pool = pool  # type: ignore[assignment]
    runs = [owned(f"close-{unique}-{i}") for i in range(10)]
    await asyncio.gather(*(store.create_run(run) for run in runs))
    leases = [Lease(run.run_id, "me", 1, 0.0) for run in runs]
    await asyncio.gather(*(store.update_run(lease, RunStatus.RUNNING) for lease in leases))
    await asyncio.gather(*(store.save_step(lease, step(lease.run_id, "a")) for lease in leases))
    assert pool.acquires > pool.releases  # the batchers hold their connections
    # More writes of every kind, still in flight when close() begins.
    writes = [asyncio.ensure_future(store.save_step(lease, step(lease.run_id, "b"))) for lease in leases]
    writes += [asyncio.ensure_future(store.update_run(lease, RunStatus.RUNNING)) for lease in leases]
    writes += [asyncio.ensure_future(store.create_run(owned(f"close-{unique}-late-{i}"))) for i in range(5)]
    await asyncio.sleep(0)
    await store.close()
    assert all(w.exception() is None for w in writes)
    assert pool.acquires == pool.releases  # nothing left checked out
    async with PostgresStore(pg_url, schema=schema_prefix) as reopened:
        for lease in leases:
            assert [s.key for s in await reopened.load_steps(lease.run_id)] == ["a", "b"]
        assert all([await reopened.get_run(f"close-{unique}-late-{i}") for i in range(5)])


@pytest.mark.parametrize("max_size", [1, 2])
async def test_a_small_pool_serves_concurrent_workflows_and_reads(
    pg_url: str, schema_prefix: str, unique: str, max_size: int
) -> None:
    store = PostgresStore(pg_url, schema=f"{schema_prefix}_small{max_size}_{unique}", max_size=max_size)
    wf = Workflow("small", db=store, default_retries=0)
    executed: Counter[str] = Counter()

    @wf.task
    async def work(tag: str, i: int) -> int:
        executed[f"{tag}/{i}"] += 1
        return i

    @wf.workflow
    async def chain(tag: str) -> int:
        return sum([await work(tag, i) for i in range(5)])

    async def reader() -> int:
        reads = 0
        for _ in range(20):
            await store.due_runs(time.time())
            reads += 1
            await asyncio.sleep(0)
        return reads

    async with wf:
        # At most half the pool is held: a pool of one holds nothing, every call acquires.
        assert len(store._held) == max_size // 2
        results = await asyncio.wait_for(
            asyncio.gather(
                *(chain.run(f"small-{unique}-{n}", f"t{n}") for n in range(20)), reader(), reader()
            ),
            60,
        )
        assert results == [10] * 20 + [20, 20]
        assert set(executed.values()) == {1} and len(executed) == 100
        for n in range(20):
            assert len(await store.load_steps(f"small-{unique}-{n}")) == 5
