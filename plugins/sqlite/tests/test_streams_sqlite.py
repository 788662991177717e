"""The SQLite store's events and streams beyond the contract suite: schema 5 (migrated from 4, with
the version and context columns), statements served by their indexes, and readers woken by another
process's writes through the change watcher, only those of the runs written.

SQLite does not declare ``notify``, so the contract suite's cross-process wake-up tests skip it;
these check the same push here (a reader whose safety-net poll is an hour away)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from durable import _streams
from durable._decode import LEGACY_RUN_FIELDS
from durable.store import Lease, RunQuery, RunRecord, RunStatus, StepRecord, StepStatus
from durable_sqlite import SQLiteStore
from durable_sqlite._outputs import KNOWN_WRITE, LIST, NEXT_POSITION, READ, STATES
from durable_sqlite._queries import list_runs
from durable_sqlite._schema import MIGRATIONS, SCHEMA_VERSION, statements

PROMPT = 1.0
"""How soon another process's write must reach a reader: far less than any poll (an hour here)."""
LIMIT = 30.0


def run(run_id: str, **fields: Any) -> RunRecord:
    now = time.time()
    return RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", now, now, **fields)


async def claimed(store: SQLiteStore, run_id: str) -> Lease:
    await store.create_run(run(run_id))
    lease = await store.claim_run(run_id, "me", 600)
    assert lease is not None
    return lease


def write_version_4_file(path: Path) -> None:
    with sqlite3.connect(path, isolation_level=None) as db:
        for version in (1, 2, 3, 4):
            for statement in statements(MIGRATIONS[version]):
                db.execute(statement)
        db.execute("INSERT INTO durable_meta VALUES ('application', 'durable'), ('schema_version', '4')")
        db.execute(
            f"INSERT INTO runs ({', '.join(LEGACY_RUN_FIELDS)}) VALUES ('v4-run', 'wf', 'running', '{{}}', "
            "'d', 1.0, 1.0, NULL, NULL, 'me', 1, 1e12, NULL, NULL, NULL, 0, NULL)"
        )
        db.execute(
            "INSERT INTO steps VALUES ('v4-run', 'a', 'task', 'd', 'completed', '1', NULL, 1, 1.0, 2.0)"
        )
    db.close()


async def test_a_version_4_file_is_upgraded_to_streams_and_stored_versions(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    write_version_4_file(path)
    async with SQLiteStore(path) as store:
        old = await store.get_run("v4-run")
        assert old is not None and (old.version, old.context) == (None, None)
        assert [step.version for step in await store.load_steps("v4-run")] == [None]
        lease = Lease("v4-run", "me", 1, 1e12)
        assert await store.append_stream(lease, "log", '"a"') == 0
        step = StepRecord("v4-run", "b", "task", "d", StepStatus.COMPLETED, "2", None, 1, 3.0, 4.0, "v2")
        await store.save_step(lease, step)
        assert [step.version for step in await store.load_steps("v4-run")] == [None, "v2"]
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM durable_meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert {"events", "stream_items", "stream_write_ids", "streams_closed", "output_changes"} <= names
        assert "runs_listed_by_version" in names
    db.close()
    assert SCHEMA_VERSION == 5


async def test_a_runs_version_and_context_are_kept_and_listed_by_version(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "v.db") as store:
        await store.create_run(run("a", version="1.0", context='{"traceparent": "00-ab-cd-01"}'))
        await store.create_run(run("b", version="2.0"))
        await store.create_run(run("c"))
        a = await store.get_run("a")
        assert a is not None and (a.version, a.context) == ("1.0", '{"traceparent": "00-ab-cd-01"}')
        lease = await store.claim_run("a", "me", 60)
        assert lease is not None
        await store.update_run(lease, RunStatus.FAILED, error=None, release=True)
        reset = await store.reset_run("a")
        assert reset is not None and (reset.version, reset.context) == (a.version, a.context)
        assert [r.run_id for r in await store.list_runs(RunQuery(version="2.0"))] == ["b"]
        assert [r.run_id for r in await store.list_runs(RunQuery(version="1.0", workflow="wf"))] == ["a"]
        assert await store.list_runs(RunQuery(version="3.0")) == []


async def test_every_stream_statement_and_the_version_listing_is_served_by_an_index(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "i.db") as store:
        db = store._connection()._require()
        version_listing, params = list_runs(RunQuery(version="1.0"))
        for sql, args, index in (
            (KNOWN_WRITE, ("r", "log", "w"), "stream_write_ids"),
            (NEXT_POSITION, ("r", "log"), "PRIMARY KEY"),
            (READ, ("r", "log", 0, 10), "PRIMARY KEY"),
            (STATES, ('["r"]',), "PRIMARY KEY"),
            (LIST, ("r",), "PRIMARY KEY"),
            (version_listing, params, "runs_listed_by_version"),
        ):
            plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))
            scans = plan
            for harmless in ("SCAN CONSTANT ROW", "SCAN (subquery-1)", "SCAN keys", "SCAN w VIRTUAL TABLE"):
                scans = scans.replace(harmless, "")  # one row, a subquery's rows, the CTE's, json_each's
            assert "SCAN" not in scans, (sql, plan)
            assert index in plan or "sqlite_autoindex" in plan, (sql, plan)
            assert "TEMP B-TREE" not in plan, (sql, plan)


WRITE_FROM_ANOTHER_PROCESS = """
import asyncio, sys
from durable.store import Lease, RunStatus
from durable_sqlite import SQLiteStore

async def main() -> None:
    path, run_id, token = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lease = Lease(run_id, "me", token, 1e12)
    async with SQLiteStore(path) as store:
        print("open", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command.startswith("append "):
                await store.append_stream(lease, "log", command.removeprefix("append "))
            elif command == "complete":
                await store.update_run(lease, RunStatus.COMPLETED, result="1", release=True)
            print("done", flush=True)

asyncio.run(main())
"""


class Writer:
    """A process writing to one run of the file on cue (the lease is this test's)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, path: Path, lease: Lease) -> Writer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITE_FROM_ANOTHER_PROCESS, str(path), lease.run_id, str(lease.token),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 60.0)).strip() == b"open"
        return cls(proc)

    async def do(self, command: str) -> float:
        """Cue ``command``; the time it was cued (``time.monotonic``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        cued = time.monotonic()
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return cued

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


async def test_another_processs_append_and_final_status_reach_a_reader_without_its_poll(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as store:
        store.poll_interval = 3600.0  # not notify: a reader re-reads at this interval, or when woken
        lease = await claimed(store, "run-1")
        writer = await Writer.start(path, lease)
        try:
            reader = _streams.read_stream(store, "run-1", "log", 0, None)
            first = asyncio.ensure_future(anext(reader))
            await asyncio.sleep(0.3)
            assert not first.done()
            cued = await writer.do('append "pushed"')
            assert await asyncio.wait_for(first, LIMIT) == (0, "pushed")
            assert time.monotonic() - cued < PROMPT
            rest = asyncio.ensure_future(anext(reader))
            await asyncio.sleep(0.3)
            assert not rest.done(), "the stream is open and the run is running: the reader waits"
            cued = await writer.do("complete")
            try:
                await asyncio.wait_for(rest, LIMIT)
                raise AssertionError("no item was written: the reader must end")
            except StopAsyncIteration:
                pass
            assert time.monotonic() - cued < PROMPT, "another process's final status must end the reader"
        finally:
            await writer.stop()


async def test_the_watcher_wakes_only_the_readers_of_the_run_another_process_wrote(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    async with SQLiteStore(path) as store:
        lease = await claimed(store, "written")
        await claimed(store, "quiet")
        writer = await Writer.start(path, lease)
        try:
            async with store.watch_output("written") as written, store.watch_output("quiet") as quiet:
                woken = asyncio.ensure_future(written.wait(LIMIT))
                idle = asyncio.ensure_future(quiet.wait(LIMIT))
                await asyncio.sleep(0.1)
                cued = await writer.do('append "x"')
                await asyncio.wait_for(woken, LIMIT)
                assert time.monotonic() - cued < PROMPT
                await asyncio.sleep(0.3)  # several checks of the watcher after the commit
                assert not idle.done(), "a write to another run must not wake this run's readers"
                idle.cancel()
        finally:
            await writer.stop()


async def test_deleting_a_run_deletes_its_rows_in_every_output_table(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "d.db") as store:
        lease = await claimed(store, "gone")
        kept = await claimed(store, "kept")
        for target in (lease, kept):
            await store.set_event(target, "progress", "1")
            await store.append_stream(target, "log", "1", write_id="w")
            await store.close_stream(target, "log")
        assert await store.delete_run("gone") is True
        db = store._connection()._require()
        for table in ("events", "stream_items", "streams_closed", "output_changes"):
            rows = db.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall()
            assert rows == [("kept",)], table
