"""Listings read what they return, however long the history (issue 16, item 13).

Among 60,000 runs of several workflows and statuses, every listing shape the core and the CLI
use (newest first, by status, by several statuses, by workflow, by version, a run's children by id prefix,
a keyset page deep in the history, prune's query) runs on an index, and the rows its scans read
are bounded by what the page returns, not by the history: measured with ``EXPLAIN ANALYZE``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from postgres_test_kit import recording

from durable.store import RunQuery, RunStatus
from durable_postgres import PostgresStore

RUN_COLUMNS = (
    "run_id, workflow, status, inputs, inputs_digest, created_at, updated_at, result, error, owner, "
    "lease_token, lease_expires_at, wake_at, deadline, parent_run_id, cancel_requested, activity"
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HISTORY = 60_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def history(pg_url: str, schema_prefix: str) -> AsyncIterator[PostgresStore]:
    """A store with ``HISTORY`` runs: workflows w0..w5, one in 100 failed, one in 1,000 cancelled,
    the rest completed; run 30000 has three children; ten pending runs are the newest; one run in
    50 has version v1."""
    store = PostgresStore(pg_url, schema=f"{schema_prefix}_listing")
    await store.open()
    s = store._quoted

    async def fill(conn: Any) -> None:
        await conn.execute(
            f"INSERT INTO {s}.runs ({RUN_COLUMNS}) SELECT 'run-' || lpad(n::text, 6, '0'), 'w' || (n % 6), "
            "CASE WHEN n % 1000 = 0 THEN 'cancelled' WHEN n % 100 = 0 THEN 'failed' ELSE 'completed' END, "
            "'{}', 'd', n, n, NULL, NULL, NULL, 1, NULL, NULL, NULL, NULL, FALSE, NULL "
            f"FROM generate_series(1, {HISTORY}) AS n"
        )
        await conn.execute(
            f"INSERT INTO {s}.runs ({RUN_COLUMNS}) SELECT 'run-030000/durable:child@c' || n, 'w0', "
            "'completed', '{}', 'd', 30000 + n * 0.1, 1, NULL, NULL, NULL, 1, NULL, NULL, NULL, "
            "'run-030000', FALSE, NULL FROM generate_series(1, 3) AS n"
        )
        await conn.execute(
            f"INSERT INTO {s}.runs ({RUN_COLUMNS}) SELECT 'new-' || n, 'w1', 'pending', '{{}}', 'd', "
            f"{HISTORY} + n, 1, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, FALSE, NULL "
            "FROM generate_series(1, 10) AS n"
        )
        # One run in 50 was created by version v1, the rest by none.
        await conn.execute(f"UPDATE {s}.runs SET version = 'v1' WHERE created_at::int8 % 50 = 7")
        await conn.execute(f"ANALYZE {s}.runs")

    conn = await asyncpg.connect(pg_url)
    try:
        await fill(conn)
    finally:
        await conn.close()
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


def nodes(plan: Any) -> list[dict[str, Any]]:
    found, stack = [], [json.loads(plan)[0]["Plan"]]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.get("Plans", ()))
    return found


async def read_by(store: PostgresStore, query: RunQuery) -> tuple[list[str], int]:
    """The indexes ``query``'s listing reads, and how many rows its scans read (loops included)."""
    with recording(store) as pool:
        await store.list_runs(query)
    [sql], [params] = pool.statements, pool.arguments
    plan = await store._call(
        "explain", lambda conn: conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params)
    )
    scans = [node for node in nodes(plan) if "Scan" in node["Node Type"]]
    assert not [node for node in scans if node["Node Type"] in ("Seq Scan", "Bitmap Heap Scan")], plan
    rows = sum(node["Actual Rows"] * node["Actual Loops"] for node in scans)
    return sorted(node["Index Name"] for node in scans), rows


FAILED = frozenset({RunStatus.FAILED})
SHAPES: list[tuple[str, RunQuery, list[str], int]] = [
    # name, query, the indexes read, at most how many rows the scans read
    ("newest", RunQuery(limit=20), ["runs_by_created"], 20),
    ("by status", RunQuery(statuses=FAILED, limit=20), ["runs_by_status"], 20),
    (
        "by three statuses, second page",
        RunQuery(
            statuses=frozenset({RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PENDING}),
            limit=20,
            offset=20,
        ),
        ["runs_by_status"] * 3,
        3 * 40,
    ),
    ("by workflow", RunQuery(workflow="w3", limit=20), ["runs_by_workflow"], 20),
    ("by version", RunQuery(version="v1", limit=20), ["runs_by_version"], 20),
    ("children by id prefix", RunQuery(id_prefix="run-030000/", limit=100), ["runs_pkey"], 3),
    (
        "a page deep in the history",
        RunQuery(limit=50, after=(20_000.0, "run-020000")),
        ["runs_by_created"],
        50,
    ),
    # One run in six is w2: read from the newest-first index, a page reads six times its length.
    (
        "by workflow, deep",
        RunQuery(workflow="w2", limit=50, after=(10_002.0, "run-010002")),
        ["runs_by_created|runs_by_workflow"],
        6 * 50 + 6,
    ),
    (
        "by status, deep",
        RunQuery(statuses=FAILED, limit=50, after=(40_000.0, "run-040000")),
        ["runs_by_status"],
        50,
    ),
]


@pytest.mark.parametrize(
    ("query", "indexes", "most"), [shape[1:] for shape in SHAPES], ids=[s[0] for s in SHAPES]
)
async def test_a_listing_reads_its_page_from_an_index(
    history: PostgresStore, query: RunQuery, indexes: list[str], most: int
) -> None:
    read, rows = await read_by(history, query)
    assert len(read) == len(indexes), read
    assert all(name in wanted.split("|") for name, wanted in zip(read, indexes, strict=True)), read
    assert rows <= most, rows
    listed = await history.list_runs(query)
    assert len(listed) == min(query.limit, rows) or query.offset


async def test_the_shapes_return_what_the_reference_filter_returns(history: PostgresStore) -> None:
    everything = await history.list_runs(RunQuery(limit=HISTORY + 100))
    assert len(everything) == HISTORY + 13
    for _, query, _, _ in SHAPES:
        wanted = [run for run in everything if query.matches(run)][query.offset : query.offset + query.limit]
        assert await history.list_runs(query) == wanted, query


async def test_a_listing_page_is_one_statement(history: PostgresStore) -> None:
    for _, query, _, _ in SHAPES:
        with recording(history) as pool:
            await history.list_runs(query)
        assert (len(pool.statements), pool.acquires) == (1, 1), query
