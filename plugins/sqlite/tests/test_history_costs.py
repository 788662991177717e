"""What a bounded read costs does not depend on the history the file holds (issue 16, item 13):
filtered listings, keyset pages, child lookups and polls among parked runs read through indexes,
counted in SQLite virtual-machine instructions (a progress handler), not timed. Schema 3 brings
those indexes; a version-2 file is upgraded when opened."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from durable._decode import LEGACY_RUN_FIELDS, RUN_FIELDS
from durable.store import RunQuery, RunRecord, RunStatus
from durable_sqlite import SQLiteStore
from durable_sqlite._queries import RUN_COLUMNS, list_runs, successor
from durable_sqlite._schema import MIGRATIONS, SCHEMA_VERSION

LEGACY_COLUMNS = ", ".join(LEGACY_RUN_FIELDS)
"""A run row's columns before schema 5 (the rows these tests write leave version and context NULL)."""
LEGACY_INSERT = f"INSERT INTO runs ({LEGACY_COLUMNS}) VALUES ({', '.join('?' * len(LEGACY_RUN_FIELDS))})"

FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
HISTORY = 20_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "history.db")
    await opened.open()
    yield opened
    await opened.close()


def connection(store: SQLiteStore) -> sqlite3.Connection:
    assert store._db is not None and store._db._db is not None
    return store._db._db


async def cost(store: SQLiteStore, call: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
    """Thousands of SQLite VM instructions ``call`` costs, and what it returned."""
    db, steps = connection(store), [0]

    def count() -> int:
        steps[0] += 1
        return 0

    db.set_progress_handler(count, 1000)
    try:
        result = await call()
    finally:
        db.set_progress_handler(None, 0)
    return steps[0], result


def insert(store: SQLiteStore, rows: list[tuple[Any, ...]]) -> None:
    db = connection(store)
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join('?' * len(RUN_FIELDS))})", rows)
    db.execute("COMMIT")


def row(run_id: str, workflow: str, status: str, created_at: float, **fields: Any) -> tuple[Any, ...]:
    record = RunRecord(run_id, workflow, RunStatus(status), "{}", "d", created_at, created_at, **fields)
    values = list(record.__dict__.values())
    values[2], values[15] = status, int(record.cancel_requested)
    return tuple(values)


def history(count: int, *, parent_every: int = 0) -> list[tuple[Any, ...]]:
    """``count`` completed runs of workflow ``old``, older than anything else; with
    ``parent_every``, every such run has two children."""
    rows = []
    for i in range(count):
        rows.append(row(f"h-{i:06d}", "old", "completed", 10.0 + i / 1000))
        if parent_every and i % parent_every == 0:
            for c in range(2):
                child = f"h-{i:06d}/durable:child@w#{c}"
                rows.append(row(child, "old", "completed", 10.0 + i / 1000, parent_run_id=f"h-{i:06d}"))
    return rows


def recent() -> list[tuple[Any, ...]]:
    """What every listing below finds: a few recent runs of each kind, a parent with children."""
    rows = [row(f"f-{i}", "mine", "failed", 5000.0 + i) for i in range(3)]
    rows += [row(f"c-{i}", "mine", "cancelled", 5100.0 + i) for i in range(3)]
    rows += [row(f"p-{i}", "mine", "pending", 5200.0 + i) for i in range(3)]
    rows.append(row("parent", "mine", "waiting", 5300.0))
    rows += [
        row(f"parent/durable:child@k#{c}", "kid", "completed", 5301.0 + c, parent_run_id="parent")
        for c in range(3)
    ]
    return rows


QUERIES: dict[str, RunQuery] = {
    "by status": RunQuery(statuses=frozenset({RunStatus.FAILED}), limit=20),
    "by statuses": RunQuery(statuses=frozenset({RunStatus.FAILED, RunStatus.CANCELLED}), limit=20),
    "by workflow": RunQuery(workflow="mine", limit=20),
    "by workflow and status": RunQuery(workflow="mine", statuses=frozenset({RunStatus.FAILED}), limit=20),
    "children": RunQuery(id_prefix="parent/", limit=100),
    "finished, keyset page": RunQuery(statuses=FINISHED, after=(5101.0, "c-1"), limit=3),
    "newest": RunQuery(limit=10),
}


async def test_listings_read_as_much_with_a_long_history_as_without(store: SQLiteStore) -> None:
    insert(store, recent())
    before = {name: await cost(store, lambda q=q: store.list_runs(q)) for name, q in QUERIES.items()}
    insert(store, history(HISTORY, parent_every=10))
    for name, query in QUERIES.items():
        steps, listed = await cost(store, lambda q=query: store.list_runs(q))
        assert listed == before[name][1], name  # the same runs: the history is older
        assert steps <= before[name][0] + 1, f"{name}: {before[name][0]}k VM steps, {steps}k with history"
    ids = [run.run_id for run in (await cost(store, lambda: store.list_runs(QUERIES["children"])))[1]]
    assert ids == [f"parent/durable:child@k#{c}" for c in (2, 1, 0)]
    page = (await cost(store, lambda: store.list_runs(QUERIES["finished, keyset page"])))[1]
    assert [run.run_id for run in page] == ["c-0", "f-2", "f-1"]


async def test_a_poll_reads_as_much_with_ten_thousand_parked_runs_as_with_none(store: SQLiteStore) -> None:
    now = time.time()
    insert(store, [row(f"due-{i}", "mine", "pending", 9000.0 + i) for i in range(5)])
    insert(store, [row("woken", "mine", "waiting", 9100.0, wake_at=now - 1)])
    insert(store, [row("live", "mine", "running", 9200.0, owner="o", lease_expires_at=now + 60)])
    before, due = await cost(store, lambda: store.due_runs(time.time(), limit=16))
    assert [run.run_id for run in due] == [*(f"due-{i}" for i in range(5)), "woken"]
    parked = [row(f"signal-{i:05d}", "mine", "waiting", 100.0 + i) for i in range(8_000)]  # no wake time
    parked += [row(f"asleep-{i:05d}", "mine", "waiting", 100.0 + i, wake_at=now + 3600) for i in range(2_000)]
    insert(store, parked)
    for workflows in (None, {"mine"}):
        steps, again = await cost(
            store, lambda w=workflows: store.due_runs(time.time(), limit=16, workflows=w)
        )
        assert again == due
        assert steps <= before + 1, f"a poll cost {before}k VM steps, {steps}k among 10,000 parked runs"


def plan(store: SQLiteStore, query: RunQuery) -> list[str]:
    sql, params = list_runs(query)
    return [line[3] for line in connection(store).execute(f"EXPLAIN QUERY PLAN {sql}", params)]


async def test_each_listing_seeks_its_index(store: SQLiteStore) -> None:
    expected = {
        "by status": "runs_listed_by_status (status=?)",
        "by statuses": "runs_listed_by_status (status=?)",
        "by workflow": "runs_listed_by_workflow (workflow=?)",
        "by workflow and status": "runs_listed_by_status (status=?)",
        "children": "sqlite_autoindex_runs_1 (run_id>? AND run_id<?)",
        "finished, keyset page": "runs_listed_by_status (status=? AND created_at<?)",
        "newest": "runs_by_created",
    }
    for name, query in QUERIES.items():
        lines = plan(store, query)
        assert any(expected[name] in line for line in lines), (name, lines)
        assert not any(line.startswith("SCAN runs") and "INDEX" not in line for line in lines), (name, lines)
        if "MERGE (UNION ALL)" in lines:  # one seek per status, each at most a page: those are sorted
            lines = [line for line in lines if not line.startswith(("SCAN (subquery", "USE TEMP B-TREE"))]
        if name != "children":  # a parent's children are sorted: they are few
            assert not any("TEMP B-TREE" in line for line in lines), (name, lines)


def test_a_prefix_ends_where_no_string_can_start_with_it() -> None:
    assert successor("parent/") == "parent0"
    assert successor("a\U0010ffff") == "b"
    assert successor("\U0010ffff") is None
    assert successor("x\ud7ff") == "x\ue000"
    for prefix in ("abc", "é", "a\U0010ffff\U0010ffff", "\x00"):
        upper = successor(prefix)
        assert upper is None or (upper > prefix and not upper.startswith(prefix))


async def test_a_prefix_listing_matches_exactly_at_the_edges_of_its_range(store: SQLiteStore) -> None:
    ids = ["a%", "a%b", "a_b", "ab", "a\U0010ffff", "a\U0010ffffz", "b", "a", "a%\U0010ffff"]
    insert(store, [row(run_id, "w", "pending", float(i)) for i, run_id in enumerate(ids)])
    for prefix in ("a%", "a_", "a\U0010ffff", "a", "", "c"):
        listed = await store.list_runs(RunQuery(id_prefix=prefix, limit=100))
        assert sorted(run.run_id for run in listed) == sorted(i for i in ids if i.startswith(prefix)), prefix


def write_version_2_file(path: Path) -> None:
    with sqlite3.connect(path, isolation_level=None) as db:
        for version in (1, 2):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("INSERT INTO durable_meta VALUES ('application', 'durable'), ('schema_version', '2')")
        db.executemany(
            LEGACY_INSERT,
            [
                row("v2-parked", "w", "waiting", 1.0)[: len(LEGACY_RUN_FIELDS)],
                row("v2-woken", "w", "waiting", 2.0, wake_at=3.0)[: len(LEGACY_RUN_FIELDS)],
                row("v2-done", "w", "completed", 3.0)[: len(LEGACY_RUN_FIELDS)],
                row("v2-pending", "w", "pending", 4.0)[: len(LEGACY_RUN_FIELDS)],
            ],
        )
    db.close()


async def test_a_version_2_file_is_upgraded_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    write_version_2_file(path)
    async with SQLiteStore(path) as store:
        assert [run.run_id for run in await store.due_runs(time.time())] == ["v2-woken", "v2-pending"]
        done = await store.list_runs(RunQuery(statuses=frozenset({RunStatus.COMPLETED}), workflow="w"))
        assert [run.run_id for run in done] == ["v2-done"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (4,)
    db.close()
