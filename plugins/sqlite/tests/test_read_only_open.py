"""A writable file opened for reading only on request (issue 19: ``durable replay`` opens the store
read-only where the backend allows): ``sqlite:///file.db?mode=ro`` or ``open(read_only=True)``
reads everything, sees other processes' commits, and writes nothing: no write, no schema upgrade,
no new file."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from durable import _streams
from durable.errors import ConfigurationError, StoreError, StoreNotFound
from durable.store import RunQuery, RunRecord, RunStatus
from durable_contract_tests._kit import lease_of, make_run, make_step
from durable_sqlite import SQLiteStore
from durable_sqlite._schema import MIGRATIONS, statements


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_of(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def populate(path: Path) -> None:
    async with SQLiteStore(path) as store:
        owned = make_run("run-1", owner="me")
        await store.create_run(owned)
        await store.save_step(lease_of(owned), make_step("run-1", "a"))
        await store.append_stream(lease_of(owned), "log", '"a"')


async def test_a_url_with_mode_ro_reads_everything_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "prod.db"
    await populate(path)
    before, files = digest(path), files_of(tmp_path)
    store = SQLiteStore.from_url(f"sqlite:///{path}?mode=ro")
    assert store.read_only
    async with store:
        assert [r.run_id for r in await store.list_runs(RunQuery())] == ["run-1"]
        assert [s.key for s in await store.load_steps("run-1")] == ["a"]
        assert (await store.read_stream("run-1", "log", 0)).items == [(0, '"a"')]
        with pytest.raises(StoreError, match=r"read-only \(it was opened for reading only \(mode=ro\)\)"):
            await store.create_run(make_run("run-2"))
        with pytest.raises(StoreError, match="read-only"):
            await store.append_stream(lease_of(make_run("run-1", owner="me")), "log", '"b"')
    assert digest(path) == before
    # SQLite's read-only connection leaves the log's index and an empty log beside the file (it may
    # not delete them); no commit is in the log.
    assert set(files_of(tmp_path)) - set(files) <= {"prod.db-shm", "prod.db-wal"}
    assert not (tmp_path / "prod.db-wal").exists() or (tmp_path / "prod.db-wal").stat().st_size == 0
    async with SQLiteStore(path) as writable:
        assert await writable.get_run("run-2") is None


async def test_open_with_read_only_does_not_upgrade_an_older_file(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        for version in (1, 2, 3, 4):
            for statement in statements(MIGRATIONS[version]):
                db.execute(statement)
        db.execute("INSERT INTO durable_meta VALUES ('application', 'durable'), ('schema_version', '4')")
    db.close()
    before = digest(path)
    with pytest.raises(StoreError, match=r"read-only and holds schema 4, which must be upgraded"):
        await SQLiteStore(path).open(create=False, read_only=True)
    assert digest(path) == before


async def test_a_missing_file_opened_read_only_is_not_found_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFound):
        await SQLiteStore.from_url(f"sqlite:///{tmp_path / 'none.db'}?mode=ro").open()
    assert files_of(tmp_path) == []


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="mode='rwc'"):
        SQLiteStore.from_url("sqlite:///x.db?mode=rwc")


async def test_a_read_only_store_sees_another_store_objects_commits_and_its_readers_are_woken(
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.db"
    async with SQLiteStore(path) as writer:
        run = RunRecord("live", "wf", RunStatus.PENDING, "{}", "d", time.time(), time.time())
        await writer.create_run(run)
        lease = await writer.claim_run("live", "me", 60)
        assert lease is not None
        async with SQLiteStore(path, read_only=True) as reader:
            reader.poll_interval = 3600.0  # only the change watcher can wake its reader in time
            items = _streams.read_stream(reader, "live", "log", 0, None)
            first = asyncio.ensure_future(anext(items))
            await asyncio.sleep(0.2)
            assert not first.done()
            await writer.append_stream(lease, "log", '"seen"')
            assert await asyncio.wait_for(first, 5.0) == (0, "seen")
            await items.aclose()
