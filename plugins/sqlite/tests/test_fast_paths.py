"""The store's fast path is taken, not only correct: sequential reads and lone commits run on the
event loop, on the ``sqlite3`` connection inside aiosqlite's (``_conn``), not through aiosqlite's
thread (``_execute``), whose hop costs three uncontended commits.

The thread path gives the same results, so an aiosqlite release that changed what the store
relies on could pass every other test and silently cost that hop on every step. These tests count
the hops, and check the private attributes the store reads (``_conn``, ``_execute``, ``_thread``)
are what it expects."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from durable import Workflow
from durable_contract_tests._kit import lease_of, make_run, make_step
from durable_sqlite import SQLiteStore


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts the calls aiosqlite's thread runs (``Connection._execute``) from now on."""
    taken: Counter[str] = Counter()
    execute = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        taken["thread"] += 1
        return await execute(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield taken


async def test_sequential_reads_and_writes_never_hop_to_aiosqlites_thread(
    tmp_path: Path, hops: Counter[str]
) -> None:
    store = SQLiteStore(tmp_path / "fast.db")
    await store.open()
    opened = hops["thread"]  # opening runs in the thread: it may wait for another process's lock
    assert opened >= 1
    try:
        run = make_run("fast", owner="me")
        await store.create_run(run)
        for i in range(30):
            await store.save_step(lease_of(run), make_step("fast", f"s{i}"))
            assert (await store.get_run("fast")) is not None
        assert len(await store.load_steps("fast")) == 30
        await store.send_signal("fast", "go", "d", '"p"')
        assert [s.payload for s in await store.list_signals("fast")] == ['"p"']
        assert hops["thread"] == opened, "a lone read or write went through aiosqlite's thread"
    finally:
        await store.close()


async def test_a_sequential_workflow_commits_every_step_on_the_loop(
    tmp_path: Path, hops: Counter[str]
) -> None:
    wf = Workflow("fast", db=str(tmp_path / "wf.db"))

    @wf.task
    async def step(i: int) -> int:
        return i

    @wf.workflow(id="seq")
    async def flow() -> int:
        return sum([await step(i) for i in range(50)])

    async with wf:
        await wf.get_store()
        opened = hops["thread"]
        assert await flow() == sum(range(50))
        assert hops["thread"] == opened, "a step's checkpoint went through aiosqlite's thread"


async def test_aiosqlite_is_laid_out_as_the_store_expects(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "layout.db")
    await store.open()
    connection = store._db
    assert connection is not None
    aio = connection._aio
    assert isinstance(aio, aiosqlite.Connection)
    # The store's own statements run on the sqlite3 connection aiosqlite holds ...
    assert isinstance(aio._conn, sqlite3.Connection) and connection._db is aio._conn
    # ... and aiosqlite's thread, made a daemon so an unclosed store cannot hold the interpreter.
    thread = aio._thread
    assert thread.daemon and thread.is_alive()
    await store.close()
    await asyncio.sleep(0)
    assert not thread.is_alive()
