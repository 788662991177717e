"""What the SQLite store promises beyond the contract suite: files, costs, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest

from durable import Workflow
from durable.errors import ConfigurationError, StoreCorrupted
from durable_sqlite import SQLiteStore
from durable_sqlite._schema import SCHEMA_VERSION


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_file_that_is_not_sqlite_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    before = digest(path)
    with pytest.raises(StoreCorrupted, match=r"notes\.db.*unchanged"):
        await SQLiteStore(path).open()
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


async def test_another_applications_database_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers (name) VALUES ('ada')")
    before = digest(path)
    with pytest.raises(StoreCorrupted, match="another application"):
        await SQLiteStore(path).open()
    assert digest(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


async def test_a_file_written_by_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        newer = str(SCHEMA_VERSION + 1)
        db.execute("UPDATE durable_meta SET value = ? WHERE key = 'schema_version'", (newer,))
    before = digest(path)
    with pytest.raises(StoreCorrupted, match="newer durable"):
        await SQLiteStore(path).open()
    assert digest(path) == before


async def test_a_truncated_file_is_reported_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "cut.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00garbage" * 50)
    with pytest.raises(StoreCorrupted):
        await SQLiteStore(path).open()


def test_urls_and_options_are_parsed_strictly(tmp_path: Path) -> None:
    assert SQLiteStore.from_url("sqlite:///rel.db").path == "rel.db"
    assert SQLiteStore.from_url(f"sqlite:///{tmp_path}/a%20b.db").path == f"{tmp_path}/a b.db"
    store = SQLiteStore.from_url("sqlite:////abs/x.db?synchronous=full&busy_timeout=2.5")
    assert (store.path, store.synchronous, store.busy_timeout) == ("/abs/x.db", "full", 2.5)
    with pytest.raises(ConfigurationError, match="unknown options"):
        SQLiteStore.from_url("sqlite:///x.db?journal=off")
    with pytest.raises(ConfigurationError, match="synchronous"):
        SQLiteStore("x.db", synchronous="sometimes")


async def test_synchronous_full_is_applied_to_the_connection(tmp_path: Path) -> None:
    async with Workflow("sync", db=f"sqlite:///{tmp_path / 'full.db'}?synchronous=full") as wf:
        store = await wf.get_store()
        assert isinstance(store, SQLiteStore)
        assert await store._read(lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
        assert await store._read(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"


async def test_a_new_step_is_one_transaction_and_a_replayed_step_is_none(tmp_path: Path) -> None:
    wf = Workflow("count", db=str(tmp_path / "count.db"), default_retries=0)
    fail = {"on": True}

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.task
    async def stop() -> None:
        if fail["on"]:
            raise RuntimeError("crash")

    @wf.workflow(id="counted")
    async def counted() -> None:
        for i in range(20):
            await step(i)
        await stop()

    store = await wf.get_store()
    assert isinstance(store, SQLiteStore)
    statements: list[str] = []
    assert store._db is not None and store._db._db is not None
    store._db._db.set_trace_callback(statements.append)
    with pytest.raises(RuntimeError):
        await counted()
    step_inserts = [s for s in statements if s.startswith("INSERT INTO steps")]
    commits = [s for s in statements if s == "COMMIT"]
    assert len(step_inserts) == 21  # 20 steps + the failed one
    # One transaction per step, plus creating the run and recording its failure.
    assert len(commits) == 21 + 2
    statements.clear()
    fail["on"] = False
    await counted()
    # Resume: claim, one query for the journal, one step, completion. Replayed steps cost nothing.
    assert len([s for s in statements if s.startswith("SELECT") and "FROM steps" in s]) == 1
    assert len([s for s in statements if s.startswith("INSERT INTO steps")]) == 1
    await wf.close()


async def test_concurrent_steps_share_commits(tmp_path: Path) -> None:
    wf = Workflow("group", db=str(tmp_path / "group.db"))

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow(id="g-{n}")
    async def flow(n: int) -> None:
        for i in range(10):
            await step(i)

    store = await wf.get_store()
    assert isinstance(store, SQLiteStore) and store._db is not None and store._db._db is not None
    commits: list[str] = []
    store._db._db.set_trace_callback(lambda s: commits.append(s) if s == "COMMIT" else None)
    await asyncio.gather(*(flow(n) for n in range(100)))
    # 100 runs x (create + 10 steps + finish) = 1,200 writes; group commit folds them.
    assert len(commits) < 300
    assert len(await store.load_steps("g-99")) == 10
    await wf.close()


async def test_a_thousand_concurrent_workflows_in_one_process_all_succeed(tmp_path: Path) -> None:
    wf = Workflow("many", db=str(tmp_path / "many.db"))

    @wf.task
    async def step(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @wf.workflow(id="m-{n}")
    async def flow(n: int) -> int:
        return sum([await step(i) for i in range(5)])

    results = await asyncio.gather(*(flow(n) for n in range(1000)), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert results == [10] * 1000
    await wf.close()


async def test_closing_leaves_no_thread_behind(tmp_path: Path) -> None:
    before = threading.active_count()
    async with Workflow("threads", db=str(tmp_path / "t.db")) as wf:

        @wf.workflow(id="t")
        async def t() -> int:
            return 1

        await t()
        assert threading.active_count() == before + 1  # aiosqlite's connection thread
    assert threading.active_count() == before


async def test_a_lone_write_commits_at_once_yet_the_loop_still_gets_turns(tmp_path: Path) -> None:
    from durable_sqlite._connection import MAX_INLINE_STREAK

    wf = Workflow("lone", db=str(tmp_path / "lone.db"))
    done: list[int] = []

    @wf.task
    async def step(i: int) -> int:
        done.append(i)
        return i

    @wf.workflow(id="lone-{n}")
    async def flow(n: int) -> None:
        for i in range(320):
            await step(i)

    store = await wf.get_store()
    assert isinstance(store, SQLiteStore) and store._db is not None
    deferred = 0
    original = store._db._flush_inline

    def counting() -> None:
        nonlocal deferred
        deferred += 1
        original()

    store._db._flush_inline = counting  # type: ignore[method-assign]
    served_after: list[int] = []
    asyncio.get_running_loop().call_later(0, lambda: served_after.append(len(done)))
    await flow(1)
    # Nothing else is ready: writes commit without waiting for a loop turn, except every
    # MAX_INLINE_STREAK-th, which lets timers and sockets be served.
    assert deferred <= 320 // MAX_INLINE_STREAK + 3
    assert served_after and served_after[0] <= MAX_INLINE_STREAK + 1

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while len(done) < 640:
            ticks += 1
            await asyncio.sleep(0)

    deferred = 0
    other = asyncio.ensure_future(ticker())
    await flow(2)
    await other
    assert deferred >= 320  # another task is always ready: every write waits for its turn
    assert ticks >= 320
    assert len(await store.load_steps("lone-2")) == 320
    await wf.close()


async def test_synchronous_full_commits_batches_in_the_thread(tmp_path: Path) -> None:
    wf = Workflow("fullb", db=f"sqlite:///{tmp_path / 'fullb.db'}?synchronous=full")

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow(id="f-{n}")
    async def flow(n: int) -> None:
        for i in range(5):
            await step(i)

    store = await wf.get_store()
    assert isinstance(store, SQLiteStore) and store._db is not None
    threads: set[str] = set()
    assert store._db._db is not None
    store._db._db.set_trace_callback(
        lambda s: threads.add(threading.current_thread().name) if s == "COMMIT" else None
    )
    await asyncio.gather(*(flow(n) for n in range(50)))
    assert threading.main_thread().name not in threads  # batches: in aiosqlite's thread
    await flow(50)
    assert threading.main_thread().name in threads  # a lone write: on the loop
    await wf.close()


async def test_steps_finished_at_the_same_time_load_in_key_order(tmp_path: Path) -> None:
    from durable.store import Lease, RunRecord, RunStatus, StepRecord, StepStatus

    store = SQLiteStore(tmp_path / "ties.db")
    await store.open()
    run = RunRecord(
        "run-1", "wf", RunStatus.RUNNING, "{}", "d", 1.0, 1.0, owner="o", lease_token=1, lease_expires_at=9e9
    )
    await store.create_run(run)
    lease = Lease("run-1", "o", 1, 9e9)
    for key, finished_at in (("c", 2.0), ("b", 1.0), ("a", 2.0), ("d", 1.0)):
        await store.save_step(
            lease, StepRecord("run-1", key, "t", "0", StepStatus.COMPLETED, "1", None, 1, 0.0, finished_at)
        )
    assert [step.key for step in await store.load_steps("run-1")] == ["b", "d", "a", "c"]
    await store.close()
