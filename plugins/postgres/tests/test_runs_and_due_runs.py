"""The Postgres store's run rows: the activity column (schema 2, migrated from 1), giving a lease
back, migrating to schema 3 (runs_live), and due runs read from runs_live whatever the history holds."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import asyncpg
import pytest

from durable._lifecycle import is_due
from durable.store import Lease, RunQuery, RunRecord, RunStatus
from durable_postgres import PostgresStore
from durable_postgres._schema import MIGRATIONS, SCHEMA_VERSION
from durable_postgres._sql import RUN_COLUMNS

pytestmark = pytest.mark.asyncio

V3_RUN_COLUMNS = RUN_COLUMNS.removesuffix(", version, context")
V1_RUN_COLUMNS = V3_RUN_COLUMNS.removesuffix(", activity")


def run(
    run_id: str, status: RunStatus = RunStatus.PENDING, created_at: float = 1.0, **fields: Any
) -> RunRecord:
    return RunRecord(run_id, "wf", status, "{}", "d", created_at, created_at, **fields)


async def owned(store: PostgresStore, run_id: str, **fields: Any) -> Lease:
    now = time.time()
    record = run(
        run_id, RunStatus.RUNNING, now, owner="me", lease_token=1, lease_expires_at=now + 60, **fields
    )
    await store.create_run(record)
    return Lease(run_id, "me", 1, now + 60)


async def activity(store: PostgresStore, run_id: str) -> str | None:
    found = await store.get_run(run_id)
    assert found is not None
    return found.activity


# -- activity ------------------------------------------------------------------


async def test_activity_is_stored_by_create_run_and_returned_by_every_read(fresh: PostgresStore) -> None:
    steps = '{"steps": [{"key": "a", "attempt": 1}]}'
    await owned(fresh, "r", activity=steps)
    assert await activity(fresh, "r") == steps
    [listed] = await fresh.list_runs(RunQuery())
    assert listed.activity == steps
    await fresh.update_run(Lease("r", "me", 1, 0.0), RunStatus.RUNNING, activity='{"x": 1}', release=True)
    [due] = await fresh.due_runs(time.time())
    assert due.activity == '{"x": 1}'


async def test_runs_created_together_keep_their_activity(store: PostgresStore, unique: str) -> None:
    import asyncio

    runs = [run(f"batch-{unique}-{i}", activity=None if i % 2 else f'{{"n": {i}}}') for i in range(6)]
    await asyncio.gather(*(store.create_run(r) for r in runs))  # the creation batcher: one statement
    assert [await activity(store, r.run_id) for r in runs] == [r.activity for r in runs]


async def test_update_run_writes_activity_as_given_none_included(store: PostgresStore, unique: str) -> None:
    lease = await owned(store, f"upd-{unique}", activity="before")
    await store.update_run(lease, RunStatus.WAITING, activity='{"signal": "go", "timeout": null}')
    assert await activity(store, lease.run_id) == '{"signal": "go", "timeout": null}'
    await store.update_run(lease, RunStatus.RUNNING)
    assert await activity(store, lease.run_id) is None


async def test_updates_sent_together_write_activity_as_given(store: PostgresStore, unique: str) -> None:
    import asyncio

    leases = [await owned(store, f"updb-{unique}-{i}", activity="before") for i in range(6)]
    wanted = [None if i % 2 else f'{{"sleep_until": {i}}}' for i in range(6)]
    await asyncio.gather(
        *(
            store.update_run(lease, RunStatus.WAITING, activity=a)
            for lease, a in zip(leases, wanted, strict=True)
        )
    )
    assert [await activity(store, lease.run_id) for lease in leases] == wanted


async def test_renew_lease_replaces_activity_only_when_given(store: PostgresStore, unique: str) -> None:
    lease = await owned(store, f"renew-{unique}", activity="first")
    assert (await store.renew_lease(lease, 60)).activity == "first"
    assert (await store.renew_lease(lease, 60, activity="second")).activity == "second"
    assert await activity(store, lease.run_id) == "second"


async def test_claim_and_reset_clear_activity(store: PostgresStore, unique: str) -> None:
    lease = await owned(store, f"clr-{unique}", activity="doing")
    await store.update_run(lease, RunStatus.RUNNING, activity="still doing", release=True)
    claimed = await store.claim_run(lease.run_id, "other", 60)
    assert claimed is not None and await activity(store, lease.run_id) is None
    await store.update_run(claimed, RunStatus.FAILED, activity="failed here", release=True)
    await store.reset_run(lease.run_id)
    assert await activity(store, lease.run_id) is None


# -- giving a lease back --------------------------------------------------------


async def test_a_lease_renewed_for_zero_seconds_is_claimable_at_once_and_keeps_its_owner(
    fresh: PostgresStore,
) -> None:
    lease = await owned(fresh, "r")
    assert await fresh.claim_run("r", "other", 60) is None  # live
    given_back = await fresh.renew_lease(lease, 0)
    assert given_back.owner == "me" and given_back.status is RunStatus.RUNNING
    assert [due.run_id for due in await fresh.due_runs(time.time() + 0.001)] == ["r"]
    claimed = await fresh.claim_run("r", "other", 60)
    assert claimed is not None and claimed.token == 2


# -- schema 2 and the migration from 1 ---------------------------------------------


async def test_a_version_1_schema_is_migrated_to_the_current_version_with_its_runs(
    pg_url: str, schema_prefix: str, unique: str
) -> None:
    schema = f"{schema_prefix}_v1_{unique}"
    quoted = f'"{schema}"'
    conn = await asyncpg.connect(pg_url)
    try:
        # The schema as durable-postgres 0.3 (schema 1) created it, with a pending, a sleeping, a
        # signal-parked and a completed run.
        await conn.execute(f"CREATE SCHEMA {quoted}")
        await conn.execute(
            f"CREATE TABLE {quoted}.schema_version (version INTEGER PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for statement in MIGRATIONS[1]:
            await conn.execute(statement.format(s=quoted))
        await conn.execute(f"INSERT INTO {quoted}.schema_version (version) VALUES (1)")
        for run_id, status, wake_at in (
            ("old-pending", "pending", None),
            ("old-asleep", "waiting", 1.0),
            ("old-parked", "waiting", None),
            ("old-done", "completed", None),
        ):
            await conn.execute(
                f"INSERT INTO {quoted}.runs ({V1_RUN_COLUMNS}) VALUES ($1, 'wf', $2, '{{}}', 'd', 1, 1, "
                "NULL, NULL, NULL, 0, NULL, $3, NULL, NULL, FALSE)",
                run_id,
                status,
                wake_at,
            )
        async with PostgresStore(pg_url, schema=schema) as store:
            old = await store.get_run("old-pending")
            assert old is not None and old.activity is None and old.status is RunStatus.PENDING
            assert (old.version, old.context) == (None, None)
            assert [due.run_id for due in await store.due_runs(time.time())] == ["old-asleep", "old-pending"]
            lease = await store.claim_run("old-pending", "me", 60)
            assert lease is not None
            await store.update_run(lease, RunStatus.WAITING, activity='{"sleep_until": 5.0}')
            assert await activity(store, "old-pending") == '{"sleep_until": 5.0}'
        versions = await conn.fetch(f"SELECT version FROM {quoted}.schema_version ORDER BY 1")
        indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1", schema)
        live = await conn.fetch(f"SELECT run_id, wake_at FROM {quoted}.runs_live ORDER BY run_id")
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quoted} CASCADE")
        await conn.close()
    assert [v[0] for v in versions] == [1, 2, 3, 4, 5] and SCHEMA_VERSION == 5
    names = {row[0] for row in indexes}
    assert {"runs_by_status", "runs_live_ready", "runs_live_asleep", "runs_by_version"} <= names
    assert not names & {"runs_active", "runs_due"}
    # The migration listed the live runs it found; the parked and the completed run are not due.
    assert [tuple(row) for row in live] == [("old-asleep", 1.0), ("old-pending", None)]


# -- due runs ----------------------------------------------------------------------


async def test_due_runs_are_exactly_what_is_due_accepts_oldest_first(fresh: PostgresStore) -> None:
    now = time.time()
    plan: list[tuple[str, RunStatus, dict[str, Any]]] = [
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
    # Created newest first, so that the expected order is not the insertion order.
    records = [run(run_id, status, 1000.0 - i, **fields) for i, (run_id, status, fields) in enumerate(plan)]
    records += [run("tie-b", created_at=1.0), run("tie-a", created_at=1.0)]
    for record in records:
        await fresh.create_run(record)
    expected = sorted((r for r in records if is_due(r, now)), key=lambda r: (r.created_at, r.run_id))
    assert [r.run_id for r in expected][:2] == ["tie-a", "tie-b"] and len(expected) == 10
    assert [r.run_id for r in await fresh.due_runs(now)] == [r.run_id for r in expected]
    assert await fresh.due_runs(now) == expected  # whole records
    assert [r.run_id for r in await fresh.due_runs(now, limit=3)] == [r.run_id for r in expected[:3]]


def plan_nodes(plan: Any) -> list[dict[str, Any]]:
    """Every node of an ``EXPLAIN (FORMAT JSON)`` plan."""
    nodes, stack = [], [json.loads(plan)[0]["Plan"]]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.get("Plans", ()))
    return nodes


async def test_a_poll_and_the_newest_runs_use_indexes_among_many_finished_runs(fresh: PostgresStore) -> None:
    s = fresh._quoted
    for i in range(10):
        await fresh.create_run(run(f"due-{i}", created_at=2_000_000.0 + i))

    async def fill(conn: Any) -> None:
        # 50,000 finished runs of the polled workflow, and 5,000 runs asleep until far later.
        await conn.execute(
            f"INSERT INTO {s}.runs ({V3_RUN_COLUMNS}) SELECT 'done-' || n, 'wf', 'completed', '{{}}', 'd', "
            "n, n, '1', NULL, NULL, 1, NULL, NULL, NULL, NULL, FALSE, NULL "
            "FROM generate_series(1, 50000) AS n"
        )
        await conn.execute(
            f"INSERT INTO {s}.runs ({V3_RUN_COLUMNS}) SELECT 'asleep-' || n, 'wf', 'waiting', '{{}}', 'd', "
            "n, n, NULL, NULL, NULL, 1, NULL, 1e12, NULL, NULL, FALSE, NULL "
            "FROM generate_series(1, 5000) AS n"
        )

    await fresh._call("fill", fill)
    newest = (
        f"SELECT {RUN_COLUMNS} FROM {s}.runs ORDER BY created_at DESC, run_id LIMIT 20 OFFSET 0"  # list_runs
    )

    async def explain(conn: Any, mode: str, sql: str) -> list[dict[str, Any]]:
        args: tuple[Any, ...] = (0.0, 100) if "$1" in sql else ()
        if "$3" in sql:
            args += (["wf"],)
        async with conn.transaction():
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            return plan_nodes(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))

    # First with the statistics of the empty tables (a server whose autovacuum is off never
    # analyzes them: a plan that trusted them read every run), then analyzed.
    for analyzed in (False, True):
        if analyzed:
            await fresh._call(
                "analyze", lambda conn: conn.execute(f"ANALYZE {s}.runs; ANALYZE {s}.runs_live")
            )
        for mode, sql in [
            (m, fresh._sql[q]) for m in ("force_custom_plan", "force_generic_plan") for q in ("due", "due_of")
        ]:
            due = await fresh._call("explain", functools.partial(explain, mode=mode, sql=sql))
            assert not [n for n in due if n["Node Type"] == "Seq Scan"], due
            # runs is read by id only, once for each due run: the sleepers and the history never.
            of_runs = [n for n in due if n.get("Relation Name") == "runs"]
            assert {(n["Node Type"], n.get("Index Name")) for n in of_runs} == {
                ("Index Scan", "runs_pkey")
            }, due
            assert sum(n["Actual Loops"] for n in of_runs) == 10, (analyzed, mode, due)
            read_live = {n.get("Index Name") for n in due if n.get("Relation Name") == "runs_live"}
            assert read_live <= {"runs_live_ready", "runs_live_asleep", None}, due
    listed = await fresh._call("explain", functools.partial(explain, mode="auto", sql=newest))
    assert [n.get("Index Name") for n in listed if "Index" in n["Node Type"]] == ["runs_by_created"], listed
    assert len(await fresh.due_runs(time.time())) == 10
    assert [r.run_id for r in await fresh.list_runs(RunQuery(limit=2))] == ["due-9", "due-8"]


async def test_due_runs_of_some_workflows_are_only_theirs_oldest_first(fresh: PostgresStore) -> None:
    for i, workflow in enumerate(["a", "b", "c", "a", "b", "a"]):
        await fresh.create_run(
            RunRecord(f"{workflow}-{i}", workflow, RunStatus.PENDING, "{}", "d", 10.0 - i, 1.0)
        )
    now = time.time()
    assert [r.run_id for r in await fresh.due_runs(now, workflows={"a"})] == ["a-5", "a-3", "a-0"]
    assert [r.run_id for r in await fresh.due_runs(now, workflows=["b", "c"])] == ["b-4", "c-2", "b-1"]
    assert [r.run_id for r in await fresh.due_runs(now, 2, workflows=("a", "c"))] == ["a-5", "a-3"]
    assert await fresh.due_runs(now, workflows=()) == []
    assert await fresh.due_runs(now, workflows={"nope"}) == []
    assert len(await fresh.due_runs(now)) == 6
