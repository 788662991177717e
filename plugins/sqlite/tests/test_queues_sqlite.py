"""The SQLite store's queues beyond the contract suite: schema 4 (migrated from 3), claims that read
no finished history, and wait_for_queues woken by another process's enqueue."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

from durable._decode import LEGACY_RUN_FIELDS
from durable.store import Enqueued, QueuedRun, QueueLimits, RunRecord, RunStatus
from durable_sqlite import SQLiteStore
from durable_sqlite._queues import CANDIDATES_ANY, LIVE_LEASES, STARTS_SINCE
from durable_sqlite._schema import MIGRATIONS, SCHEMA_VERSION, statements

LEGACY_COLUMNS = ", ".join(LEGACY_RUN_FIELDS)
"""A run row's columns before schema 5."""


def run(run_id: str, created_at: float = 1.0) -> RunRecord:
    return RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", created_at, created_at)


def entry(run_id: str, queue: str = "q", **fields: object) -> QueuedRun:
    return QueuedRun(run_id, queue, **fields)  # type: ignore[arg-type]


def write_version_3_file(path: Path) -> None:
    with sqlite3.connect(path, isolation_level=None) as db:
        for version in (1, 2, 3):
            for statement in statements(MIGRATIONS[version]):
                db.execute(statement)
        db.execute("INSERT INTO durable_meta VALUES ('application', 'durable'), ('schema_version', '3')")
        db.execute(
            f"INSERT INTO runs ({LEGACY_COLUMNS}) VALUES ('v3-pending', 'wf', 'pending', '{{}}', 'd', 1.0, "
            "1.0, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0, NULL)"
        )
    db.close()


async def test_a_version_3_file_is_upgraded_to_queues_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    write_version_3_file(path)
    async with SQLiteStore(path) as store:
        assert [r.run_id for r in await store.due_runs(time.time())] == ["v3-pending"]
        _, outcome = await store.enqueue_run(run("queued", time.time()), entry("queued"))
        assert outcome is Enqueued.CREATED
        assert [r.run_id for r in await store.due_runs(time.time())] == ["v3-pending"]
        ((claimed, _),) = await store.claim_queued("q", time.time(), "me", 60, QueueLimits(concurrency=1))
        assert claimed.run_id == "queued"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert {"queue_entries", "queue_claims", "queue_starts", "queue_debounce", "runs_leased"} <= names
        assert "queue_entry_status" in names
    db.close()
    assert SCHEMA_VERSION == 5


async def test_a_queue_entry_follows_its_runs_status_so_claims_skip_finished_runs(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "q.db") as store:
        now = time.time()
        for n in range(3):
            await store.enqueue_run(run(f"r{n}", now - 10 + n), entry(f"r{n}", enqueued_at=now - 10 + n))
        ((_, lease),) = await store.claim_queued("q", now, "me", 60, QueueLimits())
        await store.update_run(lease, RunStatus.COMPLETED, result='"ok"', release=True)
        db = store._connection()._require()
        statuses = dict(db.execute("SELECT run_id, run_status FROM queue_entries").fetchall())
        assert statuses == {"r0": "completed", "r1": "pending", "r2": "pending"}
        # The claim index holds only the entries of runs that may be due: the finished one is not read.
        open_entries = db.execute(
            "SELECT count(*) FROM queue_entries INDEXED BY queue_claims "
            "WHERE queue = 'q' AND run_status IN ('pending', 'running', 'waiting')"
        ).fetchone()
        assert open_entries == (2,)
        assert await store.list_queues() == ["q"]


async def test_every_queue_statement_is_served_by_its_index(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "q.db") as store:
        db = store._connection()._require()
        for sql, params in (
            (CANDIDATES_ANY, ("q", 1.0, 1.0)),
            (LIVE_LEASES, ("q", 1.0)),
            (STARTS_SINCE, ("q", 1.0)),
        ):
            plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), (sql, plan)


ENQUEUE_FROM_ANOTHER_PROCESS = """
import asyncio, sys, time
from durable.store import QueuedRun, RunRecord, RunStatus
from durable_sqlite import SQLiteStore

async def main() -> None:
    async with SQLiteStore(sys.argv[1]) as store:
        print("open", flush=True)
        sys.stdin.readline()
        now = time.time()
        run = RunRecord("other", "wf", RunStatus.PENDING, "{}", "d", now, now)
        await store.enqueue_run(run, QueuedRun("other", "q", enqueued_at=now, not_before=now))
        print(repr(time.time()), flush=True)

asyncio.run(main())
"""


async def test_wait_for_queues_is_woken_by_another_processs_enqueue(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    async with SQLiteStore(path) as store:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ENQUEUE_FROM_ANOTHER_PROCESS,
            str(path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 60.0)).strip() == b"open"
            waiting = asyncio.ensure_future(store.wait_for_queues(["q"], 30.0))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            began = time.monotonic()
            await asyncio.wait_for(waiting, 10.0)
            woken_after = time.monotonic() - began
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        assert woken_after < 5.0, f"woken {woken_after:.2f} s after the enqueue: by the timeout, not pushed"
        claimed = await store.claim_queued("q", time.time(), "me", 60, QueueLimits())
        assert [r.run_id for r, _ in claimed] == ["other"]
