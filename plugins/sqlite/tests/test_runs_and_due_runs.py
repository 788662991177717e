"""The SQLite store's run rows: the activity column (schema 2, migrated from 1), giving a lease
back, and due runs read from their own index whatever the history holds."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durable._decode import LEGACY_RUN_FIELDS
from durable._lifecycle import DUE_STATUSES, is_due
from durable.store import Lease, RunQuery, RunRecord, RunStatus
from durable_sqlite import SQLiteStore
from durable_sqlite._queries import DUE_RUNS, DUE_RUNS_ANY, DUE_RUNS_OF, RUN_COLUMNS, status_in
from durable_sqlite._schema import (
    ACTIVE_PREDICATE,
    DUE_INDEX_PREDICATE,
    MIGRATIONS,
    PARKED_PREDICATE,
    SCHEMA_VERSION,
)

V1_RUN_COLUMNS = ", ".join(LEGACY_RUN_FIELDS).removesuffix(", activity")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "runs.db")
    await opened.open()
    yield opened
    await opened.close()


def run(
    run_id: str, status: RunStatus = RunStatus.PENDING, created_at: float = 1.0, **fields: object
) -> RunRecord:
    return RunRecord(run_id, "wf", status, "{}", "d", created_at, created_at, **fields)  # type: ignore[arg-type]


async def owned(store: SQLiteStore, run_id: str, **fields: object) -> Lease:
    now = time.time()
    record = run(
        run_id, RunStatus.RUNNING, now, owner="me", lease_token=1, lease_expires_at=now + 60, **fields
    )
    await store.create_run(record)
    return Lease(run_id, "me", 1, now + 60)


async def activity(store: SQLiteStore, run_id: str) -> str | None:
    found = await store.get_run(run_id)
    assert found is not None
    return found.activity


# -- activity ------------------------------------------------------------------


async def test_activity_is_stored_by_create_run_and_returned_by_every_read(store: SQLiteStore) -> None:
    await owned(store, "r", activity='{"steps": [{"key": "a", "attempt": 1}]}')
    assert await activity(store, "r") == '{"steps": [{"key": "a", "attempt": 1}]}'
    [listed] = await store.list_runs(RunQuery())
    assert listed.activity == '{"steps": [{"key": "a", "attempt": 1}]}'
    lease = Lease("r", "me", 1, 0.0)
    await store.update_run(lease, RunStatus.RUNNING, activity='{"x": 1}', release=True)
    [due] = await store.due_runs(time.time())
    assert due.activity == '{"x": 1}'


async def test_update_run_writes_activity_as_given_none_included(store: SQLiteStore) -> None:
    lease = await owned(store, "r", activity="before")
    await store.update_run(lease, RunStatus.WAITING, activity='{"signal": "go", "timeout": null}')
    assert await activity(store, "r") == '{"signal": "go", "timeout": null}'
    await store.update_run(lease, RunStatus.RUNNING)
    assert await activity(store, "r") is None


async def test_renew_lease_replaces_activity_only_when_given(store: SQLiteStore) -> None:
    lease = await owned(store, "r", activity="first")
    assert (await store.renew_lease(lease, 60)).activity == "first"
    assert (await store.renew_lease(lease, 60, activity="second")).activity == "second"
    assert await activity(store, "r") == "second"


async def test_claim_and_reset_clear_activity(store: SQLiteStore) -> None:
    lease = await owned(store, "r", activity="doing")
    await store.update_run(lease, RunStatus.RUNNING, activity="still doing", release=True)
    claimed = await store.claim_run("r", "other", 60)
    assert claimed is not None and await activity(store, "r") is None
    await store.update_run(claimed, RunStatus.FAILED, error=None, activity="failed here", release=True)
    await store.reset_run("r")
    assert await activity(store, "r") is None


# -- giving a lease back --------------------------------------------------------


async def test_a_lease_renewed_for_zero_seconds_is_claimable_at_once_and_keeps_its_owner(
    store: SQLiteStore,
) -> None:
    lease = await owned(store, "r")
    assert await store.claim_run("r", "other", 60) is None  # live
    given_back = await store.renew_lease(lease, 0)
    assert given_back.owner == "me" and given_back.status is RunStatus.RUNNING
    assert not given_back.lease_is_live(time.time())
    assert [due.run_id for due in await store.due_runs(time.time())] == ["r"]
    claimed = await store.claim_run("r", "other", 60)
    assert claimed is not None and claimed.token == 2


# -- schema 2 and the migration from 1 ---------------------------------------------


def write_version_1_file(path: Path) -> None:
    """A file as durable-sqlite 0.3 (schema 1) left it, with a pending and a completed run."""
    with sqlite3.connect(path, isolation_level=None) as db:
        for statement in MIGRATIONS[1].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO durable_meta VALUES ('application', 'durable'), ('schema_version', '1')")
        for run_id, status in (("old-pending", "pending"), ("old-done", "completed")):
            db.execute(
                f"INSERT INTO runs ({V1_RUN_COLUMNS}) VALUES (?,'wf',?,'{{}}','d',1.0,1.0,"
                "NULL,NULL,NULL,0,NULL,NULL,NULL,NULL,0)",
                (run_id, status),
            )
    db.close()


async def test_a_version_1_file_opens_migrated_to_the_current_version_with_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    write_version_1_file(path)
    store = SQLiteStore(path)
    await store.open()
    try:
        old = await store.get_run("old-pending")
        assert old is not None and old.activity is None and old.status is RunStatus.PENDING
        assert [due.run_id for due in await store.due_runs(time.time())] == ["old-pending"]
        lease = await store.claim_run("old-pending", "me", 60)
        assert lease is not None
        await store.update_run(lease, RunStatus.WAITING, activity='{"sleep_until": 5.0}')
        assert await activity(store, "old-pending") == '{"sleep_until": 5.0}'
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"runs_active", "runs_parked", "runs_listed_by_status", "runs_listed_by_workflow"} <= indexes
        assert not {"runs_due", "runs_by_status"} & indexes
    db.close()
    assert SCHEMA_VERSION == 5


async def test_the_due_indexes_cover_exactly_the_lifecycles_due_statuses() -> None:
    # The indexes' WHERE terms are fixed by migration 3 and written out in the due-run query. If
    # the lifecycle's statuses change, this fails until a migration rebuilds the indexes: the
    # active runs are those of DUE_STATUSES but waiting, plus waiting runs with an owner; the
    # parked ones are the waiting runs without one.
    assert status_in(DUE_STATUSES) == DUE_INDEX_PREDICATE
    active = status_in(DUE_STATUSES - {RunStatus.WAITING})
    assert f"({active} OR (status = 'waiting' AND owner IS NOT NULL))" == ACTIVE_PREDICATE
    assert PARKED_PREDICATE == "status = 'waiting' AND owner IS NULL"
    for predicate in (ACTIVE_PREDICATE, PARKED_PREDICATE):
        assert predicate in MIGRATIONS[3] and predicate in DUE_RUNS


# -- due runs ----------------------------------------------------------------------


async def test_due_runs_are_exactly_what_is_due_accepts_oldest_first(store: SQLiteStore) -> None:
    now = time.time()
    plan: list[tuple[str, RunStatus, dict[str, object]]] = [
        ("pending", RunStatus.PENDING, {}),
        ("live", RunStatus.RUNNING, {"owner": "o", "lease_expires_at": now + 60}),
        ("expired", RunStatus.RUNNING, {"owner": "o", "lease_expires_at": now - 1}),
        ("expires-now", RunStatus.RUNNING, {"owner": "o", "lease_expires_at": now}),
        ("ownerless-running", RunStatus.RUNNING, {}),
        ("owner-no-expiry", RunStatus.RUNNING, {"owner": "o"}),
        ("parked-asleep", RunStatus.WAITING, {"wake_at": now + 60}),
        ("parked-awake", RunStatus.WAITING, {"wake_at": now - 1}),
        ("parked-wakes-now", RunStatus.WAITING, {"wake_at": now}),
        ("parked-no-wake", RunStatus.WAITING, {}),
        ("waiting-dead-owner", RunStatus.WAITING, {"owner": "o", "lease_expires_at": now - 1}),
        ("waiting-live-owner", RunStatus.WAITING, {"owner": "o", "lease_expires_at": now + 60}),
        ("completed", RunStatus.COMPLETED, {}),
        ("failed", RunStatus.FAILED, {}),
        ("cancelled", RunStatus.CANCELLED, {}),
    ]
    records = []
    # Created newest first, so that the expected order is not the insertion order.
    for i, (run_id, status, fields) in enumerate(plan):
        records.append(run(run_id, status, created_at=1000.0 - i, **fields))
    records.append(run("tie-b", created_at=1.0))
    records.append(run("tie-a", created_at=1.0))
    for record in records:
        await store.create_run(record)
    expected = sorted((r for r in records if is_due(r, now)), key=lambda r: (r.created_at, r.run_id))
    assert [r.run_id for r in await store.due_runs(now)] == [r.run_id for r in expected]
    assert [r.run_id for r in expected][:2] == ["tie-a", "tie-b"] and len(expected) == 10
    assert await store.due_runs(now) == expected  # whole records
    assert [r.run_id for r in await store.due_runs(now, limit=3)] == [r.run_id for r in expected[:3]]


def plan_of(db: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[str]:
    return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


async def test_a_poll_and_the_newest_runs_are_read_through_indexes(store: SQLiteStore) -> None:
    for sql, params in ((DUE_RUNS_ANY, (1.0, 10)), (DUE_RUNS_OF, (1.0, 10, '["a"]'))):
        plan = await store._read(lambda db, sql=sql, params=params: plan_of(db, sql, params))
        # The active runs in order; the parked ones only from the wake time on.
        assert "SCAN runs USING INDEX runs_active" in plan, plan
        assert "SEARCH runs USING INDEX runs_parked (wake_at<?)" in plan, plan
    newest = f"SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1 ORDER BY created_at DESC, run_id LIMIT ? OFFSET ?"
    assert await store._read(lambda db: plan_of(db, newest, (20, 0))) == [
        "SCAN runs USING INDEX runs_by_created"
    ]


async def test_a_poll_reads_as_much_with_many_finished_runs_as_with_none(store: SQLiteStore) -> None:
    for i in range(10):
        await store.create_run(run(f"due-{i}", created_at=2000.0 + i))

    async def cost_of_a_poll() -> int:
        # SQLite's virtual machine instructions for one due_runs call, counted in thousands.
        assert store._db is not None and store._db._db is not None
        db, steps = store._db._db, [0]

        def count() -> int:
            steps[0] += 1
            return 0

        db.set_progress_handler(count, 1000)
        try:
            assert len(await store.due_runs(time.time())) == 10
        finally:
            db.set_progress_handler(None, 0)
        return steps[0]

    empty = await cost_of_a_poll()
    assert store._db is not None and store._db._db is not None
    store._db._db.execute("BEGIN")
    store._db._db.executemany(
        f"INSERT INTO runs ({', '.join(LEGACY_RUN_FIELDS)}) VALUES (?,'wf','completed','{{}}','d',?,?,'1',"
        "NULL,NULL,1,NULL,NULL,NULL,NULL,0,NULL)",
        ((f"done-{i}", 1000.0 + i / 100, 1000.0 + i / 100) for i in range(20_000)),
    )
    store._db._db.execute("COMMIT")
    assert await store.list_runs(RunQuery(statuses=frozenset({RunStatus.COMPLETED}), limit=1))
    assert await cost_of_a_poll() <= empty + 1


async def test_due_runs_of_some_workflows_are_only_theirs_oldest_first(store: SQLiteStore) -> None:
    for i, workflow in enumerate(["a", "b", "c", "a", "b", "a"]):
        await store.create_run(
            RunRecord(f"{workflow}-{i}", workflow, RunStatus.PENDING, "{}", "d", 10.0 - i, 1.0)
        )
    now = time.time()
    assert [r.run_id for r in await store.due_runs(now, workflows={"a"})] == ["a-5", "a-3", "a-0"]
    assert [r.run_id for r in await store.due_runs(now, workflows=["b", "c"])] == ["b-4", "c-2", "b-1"]
    assert [r.run_id for r in await store.due_runs(now, 2, workflows=("a", "c"))] == ["a-5", "a-3"]
    assert await store.due_runs(now, workflows=()) == []
    assert await store.due_runs(now, workflows={"nope"}) == []
    assert len(await store.due_runs(now)) == 6
