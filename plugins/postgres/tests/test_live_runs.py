"""``runs_live`` (schema 3): the runs a poll may take, kept by triggers, vacuumed by the store.

The triggers keep the table equal to what ``_schema.LIVE`` and ``_schema.ASLEEP`` say of each
run row, through the store's writes, batches and hand edits; ``LIVE`` never leaves out a run that
``is_due`` could take; a store that takes ``TIDY_EVERY`` runs out of the table vacuums it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

import durable_postgres._store as store_module
from durable._lifecycle import is_due
from durable.store import Lease, RunRecord, RunStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio


def listed(run: RunRecord) -> tuple[str, float | None] | None:
    """What ``runs_live`` should hold for ``run``: its id and parked wake time, or nothing."""
    if run.status not in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING):
        return None
    if run.status is RunStatus.WAITING and run.owner is None:
        return None if run.wake_at is None else (run.run_id, run.wake_at)
    return (run.run_id, None)


async def live(store: PostgresStore) -> set[tuple[str, float | None]]:
    rows = await store._call(
        "read runs_live", lambda conn: conn.fetch(f"SELECT run_id, wake_at FROM {store._quoted}.runs_live")
    )
    return {(row[0], row[1]) for row in rows}


async def expected(store: PostgresStore) -> set[tuple[str, float | None]]:
    runs = await store._call(
        "read runs", lambda conn: conn.fetch(f"SELECT run_id FROM {store._quoted}.runs ORDER BY run_id")
    )
    found = set()
    for (run_id,) in runs:
        run = await store.get_run(run_id)
        assert run is not None
        entry = listed(run)
        if entry is not None:
            found.add(entry)
    return found


async def test_runs_live_leaves_out_only_runs_that_are_never_due() -> None:
    # Every shape a run row can take (status, owner, lease, wake time), at many times.
    now = 1_000.0
    times = [now - 100, now - 1, now, now + 1, now + 100]
    for status, owner, lease, wake in itertools.product(
        RunStatus, [None, "o"], [None, now - 10, now + 10], [None, now - 10, now + 10]
    ):
        if status in (RunStatus.INTERRUPTED, RunStatus.CORRUPT):
            continue  # never stored
        run = RunRecord(
            "r", "wf", status, "{}", "d", 1.0, 1.0, owner=owner, lease_expires_at=lease, wake_at=wake
        )
        entry = listed(run)
        due_at = [t for t in times if is_due(run, t)]
        if entry is None:
            assert due_at == [], run  # left out: nothing would ever take it
        elif entry[1] is not None:
            assert due_at == [t for t in times if t >= entry[1]], run  # asleep: due from its wake time
        else:
            assert due_at or (lease is not None and lease > times[-1]), run


async def test_the_triggers_keep_runs_live_through_every_kind_of_write(fresh: PostgresStore) -> None:
    s = fresh._quoted
    now = time.time()
    for i in range(4):
        await fresh.create_run(RunRecord(f"p{i}", "wf", RunStatus.PENDING, "{}", "d", now + i, now))
    owned = RunRecord(
        "own",
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
    await asyncio.gather(*(fresh.create_run(r) for r in [owned] + [
        RunRecord(f"b{i}", "wf", RunStatus.PENDING, "{}", "d", now, now) for i in range(5)
    ]))  # fmt: skip
    assert await live(fresh) == await expected(fresh) and len(await live(fresh)) == 10
    lease = await fresh.claim_run("p0", "me", 60)
    assert lease is not None
    await fresh.renew_lease(lease, 60)
    await fresh.update_run(lease, RunStatus.WAITING, wake_at=now + 3600, release=True)  # a durable sleep
    lease1 = await fresh.claim_run("p1", "me", 60)
    assert lease1 is not None
    await fresh.update_run(lease1, RunStatus.WAITING, release=True)  # parked on a signal
    assert ("p1", None) not in await live(fresh) and ("p0", now + 3600) in await live(fresh)
    await fresh.send_signal("p1", "go", "", "1")  # woken: listed with its wake time
    assert await live(fresh) == await expected(fresh)
    lease2 = await fresh.claim_run("p2", "me", 60)
    assert lease2 is not None
    await asyncio.gather(  # the update batcher
        fresh.update_run(lease2, RunStatus.COMPLETED, result="1", release=True),
        fresh.update_run(Lease("own", "me", 1, 0.0), RunStatus.FAILED, error=None, release=True),
    )
    await fresh.reset_run("own")
    await fresh.request_cancel("p3")
    await fresh.delete_run("b0")
    # Hand edits, as an operator would make them.
    await fresh._call(
        "edit", lambda conn: conn.execute(f"UPDATE {s}.runs SET status = 'completed' WHERE run_id = 'b1'")
    )
    await fresh._call(
        "edit", lambda conn: conn.execute(f"UPDATE {s}.runs SET created_at = 5 WHERE run_id = 'b2'")
    )
    await fresh._call(
        "edit", lambda conn: conn.execute(f"UPDATE {s}.runs SET status = 'bogus' WHERE run_id = 'b3'")
    )
    await fresh._call("edit", lambda conn: conn.execute(f"DELETE FROM {s}.runs WHERE run_id = 'b4'"))
    assert (
        await live(fresh)
        == await expected(fresh)
        == {
            ("p0", now + 3600),
            ("p1", (await fresh.get_run("p1")).wake_at),  # type: ignore[union-attr]
            ("own", None),
            ("b2", None),
        }
    )
    assert [run.run_id for run in await fresh.due_runs(time.time())] == ["b2", "own", "p1"]


async def test_a_store_that_takes_many_runs_out_of_runs_live_vacuums_it(
    fresh: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "TIDY_EVERY", 20)
    # Both tables a finished run leaves: runs_live, and queue_open for a queued one (flat queue
    # claims and queue_stats, benchmarks/flat_queue_history.py). The fewer of their counts.
    sql = (
        "SELECT min(vacuum_count) FROM pg_stat_user_tables WHERE schemaname = $1 "
        "AND relname IN ('runs_live', 'queue_open')"
    )

    async def vacuums() -> int:
        async def read(conn: Any) -> int:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            return int(await conn.fetchval(sql, fresh.schema))

        return await fresh._call("count vacuums", read)

    now = time.time()
    for i in range(19):
        await fresh.create_run(
            RunRecord(
                f"r{i}",
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
        )
        await fresh.update_run(Lease(f"r{i}", "me", 1, 0.0), RunStatus.COMPLETED, result="1", release=True)
    await asyncio.sleep(1.0)
    assert await vacuums() == 0 and fresh._tidying is None
    await fresh.delete_run("r0")  # the 20th run out
    assert fresh._tidying is not None
    await fresh._tidying
    deadline = time.monotonic() + 15  # the statistics a vacuum reports reach the view within seconds
    while await vacuums() == 0:
        assert time.monotonic() < deadline, "runs_live or queue_open was not vacuumed"
        await asyncio.sleep(0.2)
    assert fresh._removed == 0
