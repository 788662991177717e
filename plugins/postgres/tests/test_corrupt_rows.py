"""Rows damaged by hand or by a bug (issue 16, items 1 and 7): one bad row never stops a fleet.

Each test damages rows with SQL, as an operator or a bug would (a status no release writes, NaN
or infinity in a time column, an error that is not a stored error, a step status nobody knows),
and shows that reads return the healthy runs plus a corrupt record naming the field, that polls
skip what they can tell is unreadable, that nothing raises but the one read of a damaged step
(``StoreCorrupted`` naming the run and the field), and that nothing in the store changes.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from click.testing import CliRunner

from durable import Workflow
from durable.cli import cli
from durable.errors import StoreCorrupted
from durable.store import Lease, RunQuery, RunRecord, RunStatus, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio

DAMAGE = {
    # run id: (status to give it first, column, value written by hand)
    "bad-status": ("pending", "status", "bogus"),
    "nan-created": ("pending", "created_at", "NaN"),
    "bad-error": ("pending", "error", "not a stored error"),
    "infinite-wake": ("waiting", "wake_at", "Infinity"),
    "nan-lease": ("running", "lease_expires_at", "NaN"),
}


def pending(run_id: str, created_at: float) -> RunRecord:
    return RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", created_at, created_at)


async def execute(store: PostgresStore, sql: str, *args: Any) -> Any:
    return await store._call("damage", lambda conn: conn.execute(sql, *args))


async def dump(store: PostgresStore) -> list[list[tuple[Any, ...]]]:
    """Every row of every table of the store's schema, in a fixed order (NaN as the text 'nan', so
    that a row equals itself)."""

    async def read(conn: Any) -> list[list[tuple[Any, ...]]]:
        tables: list[list[tuple[Any, ...]]] = []
        for table, order in (("runs", "run_id"), ("runs_live", "run_id"), ("steps", "run_id, key")):
            if await conn.fetchval("SELECT to_regclass($1)", f"{store._quoted}.{table}") is None:
                tables.append([])  # a schema older than the table
                continue
            rows = await conn.fetch(f"SELECT * FROM {store._quoted}.{table} ORDER BY {order}")
            tables.append([tuple("nan" if value != value else value for value in row) for row in rows])
        return tables

    return await store._call("dump", read)


async def damaged(store: PostgresStore) -> None:
    """Five healthy due runs and the damaged runs of ``DAMAGE``, created in between."""
    base = time.time() - 100
    for i in range(3):
        await store.create_run(pending(f"healthy-{i}", base + i))
    for i, (run_id, (status, column, value)) in enumerate(DAMAGE.items()):
        await store.create_run(pending(run_id, base + 10 + i))
        # Due before the damage: pending, or (waiting) woken, or (running) with an expired lease.
        await execute(
            store,
            f"UPDATE {store._quoted}.runs SET status = $2, wake_at = CASE WHEN $2 = 'waiting' THEN 1 END, "
            "owner = CASE WHEN $2 = 'running' THEN 'dead' END, "
            "lease_expires_at = CASE WHEN $2 = 'running' THEN 1 END WHERE run_id = $1",
            run_id,
            status,
        )
        await execute(
            store, f"UPDATE {store._quoted}.runs SET {column} = '{value}' WHERE run_id = $1", run_id
        )
    for i in range(3, 5):
        await store.create_run(pending(f"healthy-{i}", base + 20 + i))


async def test_damaged_runs_read_as_corrupt_runs_naming_the_field_and_change_nothing(
    fresh: PostgresStore,
) -> None:
    await damaged(fresh)
    before = await dump(fresh)
    for run_id, (_, column, _) in DAMAGE.items():
        run = await fresh.get_run(run_id)
        assert run is not None and run.status is RunStatus.CORRUPT, run_id
        error = json.loads(run.error or "{}")
        assert (error["field"], error["store"]) == (column, repr(fresh)), run_id
    listed = {run.run_id: run.status for run in await fresh.list_runs(RunQuery(limit=100))}
    assert len(listed) == 10
    assert {run_id for run_id, status in listed.items() if status is RunStatus.CORRUPT} == set(DAMAGE)
    # A poll leaves out every damaged run it can tell from its columns; an error that is not a
    # stored error it cannot: that one comes back, as a corrupt run the worker skips.
    due = await fresh.due_runs(time.time())
    assert [(run.run_id, run.status) for run in due] == [
        ("healthy-0", RunStatus.PENDING),
        ("healthy-1", RunStatus.PENDING),
        ("healthy-2", RunStatus.PENDING),
        ("bad-error", RunStatus.CORRUPT),
        ("healthy-3", RunStatus.PENDING),
        ("healthy-4", RunStatus.PENDING),
    ]
    assert len(await fresh.due_runs(time.time(), workflows=["wf"])) == 6
    # A cancel or a reset of a damaged run answers with the corrupt record, and changes nothing.
    cancelled = await fresh.request_cancel("bad-status")
    assert cancelled is not None and cancelled.status is RunStatus.CORRUPT
    reset = await fresh.reset_run("bad-status")
    assert reset is not None and reset.status is RunStatus.CORRUPT
    after = await dump(fresh)
    changed = [
        row
        for table_before, table_after in zip(before, after, strict=True)
        for row in table_after
        if row not in table_before
    ]
    assert changed == []


async def test_a_step_that_cannot_be_read_raises_store_corrupted_naming_the_run_and_the_step(
    fresh: PostgresStore,
) -> None:
    now = time.time()
    run = RunRecord(
        "r",
        "wf",
        RunStatus.RUNNING,
        "{}",
        "d",
        now,
        now,
        owner="me",
        lease_token=1,
        lease_expires_at=now + 60,
    )
    await fresh.create_run(run)
    lease = Lease("r", "me", 1, now + 60)
    for key in ("a", "b"):
        await fresh.save_step(
            lease, StepRecord("r", key, "t", "d", StepStatus.COMPLETED, '"x"', None, 1, now, now)
        )
    await execute(fresh, f"UPDATE {fresh._quoted}.steps SET status = 'bogus' WHERE key = 'b'")
    before = await dump(fresh)
    with pytest.raises(StoreCorrupted) as raised:
        await fresh.load_steps("r")
    assert (raised.value.run_id, raised.value.field, raised.value.store) == (
        "r",
        "step 'b': status",
        repr(fresh),
    )
    # Saving it again finds the damaged row: the same error, for that call alone, in a batch too.
    again = StepRecord("r", "b", "t", "d", StepStatus.COMPLETED, '"y"', None, 1, now, now)
    other = StepRecord("r", "c", "t", "d", StepStatus.COMPLETED, '"z"', None, 1, now, now)
    outcomes = await asyncio.gather(
        fresh.save_step(lease, again), fresh.save_step(lease, other), return_exceptions=True
    )
    assert isinstance(outcomes[0], StoreCorrupted) and outcomes[0].run_id == "r", outcomes
    assert outcomes[1] == other
    after = await dump(fresh)
    assert after[0] == before[0] and after[1] == before[1]  # runs and runs_live untouched
    assert [row for row in after[2] if row not in before[2]] == [
        ("r", "c", "t", "d", "completed", '"z"', None, 1, now, now, None)
    ]


async def test_a_worker_executes_every_healthy_run_of_its_own_past_damaged_rows(
    pg_url: str, schema_prefix: str, unique: str
) -> None:
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}schema={schema_prefix}_corrupt_wf_{unique}"
    executed: list[int] = []
    wf = Workflow("mine", db=url)

    @wf.task
    async def work(n: int) -> int:
        executed.append(n)
        return n

    @wf.workflow(id="mine-{n}")
    async def own(n: int) -> int:
        return await work(n)

    for n in range(6):
        await own.start(n)
    store = await wf.get_store()
    assert isinstance(store, PostgresStore)
    for run_id, column, value in (
        ("mine-1", "status", "bogus"),
        ("mine-2", "error", "{oops"),
        ("mine-3", "created_at", "NaN"),
    ):
        await execute(
            store, f"UPDATE {store._quoted}.runs SET {column} = '{value}' WHERE run_id = $1", run_id
        )
    before = await dump(store)
    worker = wf.worker(concurrency=4, poll_interval=0.02)
    stop = asyncio.Event()
    working = asyncio.create_task(worker.run(stop))
    try:
        for n in (0, 4, 5):
            assert await wf.wait_for(f"mine-{n}", timeout=20) == n
    finally:
        stop.set()
        await working
    assert sorted(executed) == [0, 4, 5]  # each healthy run once, no damaged one
    assert worker.corrupt_runs == {"mine-2"}  # the one the poll could not tell
    after = await dump(store)
    changed = {row[0] for row in after[0] if row not in before[0]}
    assert changed == {"mine-0", "mine-4", "mine-5"}  # the damaged rows are untouched
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["runs", "check", "--store", url, "--json"], catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    found = {d["run_id"]: d["field"] for d in json.loads(result.output)}
    assert found == {"mine-1": "status", "mine-2": "error", "mine-3": "created_at"}
    await store.drop_schema()
    await wf.close()
