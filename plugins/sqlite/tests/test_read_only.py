"""A healthy store on a path this process cannot write (issue 16, item 8): it is read by the store,
``durable runs list/show`` and the viewer; a write says the file is read-only, naming it. A
``schema_version`` no release wrote is ``StoreCorrupted`` naming the file and the version.

Tests run as root, which file permissions do not stop, so the read-only paths here are the two
that stop root too: a read-only bind mount of the store's directory (as a container's read-only
volume is), and an immutable file (``chattr +i``). A file that merely lacks write permission takes
the same path (SQLite opens it read-only, or cannot create its log beside it), which a test as
root cannot show.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable.errors import StoreCorrupted, StoreError
from durable.store import RunQuery, RunRecord, RunStatus
from durable_contract_tests._kit import lease_of, make_run, make_step
from durable_sqlite import SQLiteStore
from durable_sqlite._schema import MIGRATIONS, SCHEMA_VERSION


def run(run_id: str, created_at: float) -> RunRecord:
    return RunRecord(run_id, "wf", RunStatus.PENDING, '{"n": 1}', "d", created_at, created_at)


async def populate(path: Path) -> None:
    async with SQLiteStore(path) as store:
        owned = make_run("with-steps", owner="me")
        await store.create_run(owned)
        await store.save_step(lease_of(owned), make_step("with-steps", "a"))
        await store.send_signal("with-steps", "go", "d1", '"payload"')
        for i in range(3):
            await store.create_run(run(f"run-{i}", 1000.0 + i))


def sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """``(writable, read_only)``: one directory, and a read-only bind mount of it."""
    writable, mounted = tmp_path / "rw", tmp_path / "ro"
    writable.mkdir()
    mounted.mkdir()
    bound = sh("mount", "--bind", str(writable), str(mounted))
    if bound.returncode != 0:
        pytest.skip(f"bind mounts are not permitted here ({bound.stderr.strip()})")
    try:
        remounted = sh("mount", "-o", "remount,ro,bind", str(mounted))
        if remounted.returncode != 0:
            pytest.skip(f"cannot make a bind mount read-only here ({remounted.stderr.strip()})")
        yield writable, mounted
    finally:
        if sh("umount", str(mounted)).returncode != 0:
            sh("umount", "-l", str(mounted))


def files_of(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def reads_everything(store: SQLiteStore) -> None:
    assert [r.run_id for r in await store.list_runs(RunQuery(limit=10, workflow="wf"))][-3:] == [
        "run-2",
        "run-1",
        "run-0",
    ]
    got = await store.get_run("run-1")
    assert got is not None and got.status is RunStatus.PENDING
    assert [s.key for s in await store.load_steps("with-steps")] == ["a"]
    assert [s.payload for s in await store.list_signals("with-steps")] == ['"payload"']
    assert await store.due_runs(time.time(), 10)


async def test_a_store_on_a_read_only_mount_is_read_and_refuses_writes_naming_the_file(
    read_only_mount: tuple[Path, Path],
) -> None:
    writable, mounted = read_only_mount
    await populate(writable / "s.db")
    assert files_of(writable) == ["s.db"]  # closed cleanly: no log left beside it
    store = SQLiteStore(mounted / "s.db")
    await store.open()
    try:
        await reads_everything(store)
        for write in (
            store.create_run(run("new", 1.0)),
            store.request_cancel("run-1"),
            store.send_signal("run-1", "go", "d", "1"),
            store.claim_run("run-1", "me", 10),
        ):
            with pytest.raises(StoreError, match="read-only") as raised:
                await write
            assert str(mounted / "s.db") in str(raised.value) and "read-only file system" in str(raised.value)
            assert not isinstance(raised.value, StoreCorrupted)
    finally:
        await store.close()
    assert files_of(writable) == ["s.db"]


async def test_a_read_only_reader_sees_what_a_writer_elsewhere_commits_meanwhile(
    read_only_mount: tuple[Path, Path],
) -> None:
    writable, mounted = read_only_mount
    await populate(writable / "s.db")
    async with SQLiteStore(writable / "s.db") as writer:
        await writer.create_run(run("while-open", 2000.0))  # the log now holds commits
        async with SQLiteStore(mounted / "s.db") as reader:
            assert await reader.get_run("while-open") is not None
            await writer.create_run(run("later", 3000.0))
            assert await reader.get_run("later") is not None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    durable = Path(sys.executable).with_name("durable")
    return subprocess.run([str(durable), *args], capture_output=True, text=True, timeout=60)


def test_durable_runs_list_show_and_the_viewer_read_a_store_on_a_read_only_mount(
    read_only_mount: tuple[Path, Path],
) -> None:
    from durable._ui import UIServer

    writable, mounted = read_only_mount
    asyncio.run(populate(writable / "s.db"))
    url = f"sqlite:///{mounted / 's.db'}"
    listed = cli("runs", "list", "--store", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {r["run_id"] for r in json.loads(listed.stdout)} == {"with-steps", "run-0", "run-1", "run-2"}
    shown = cli("runs", "show", "with-steps", "--store", url)
    assert shown.returncode == 0 and "with-steps" in shown.stdout, shown.stderr
    cancelled = cli("runs", "cancel", "run-1", "--store", url)
    assert cancelled.returncode != 0
    assert "read-only" in cancelled.stderr and str(mounted / "s.db") in cancelled.stderr
    assert "Traceback" not in cancelled.stderr
    with UIServer(url, port=0) as ui:
        with urllib.request.urlopen(ui.url.rstrip("/") + "/api/runs", timeout=10) as response:
            runs = json.loads(response.read())
        with urllib.request.urlopen(ui.url.rstrip("/") + "/api/run?id=with-steps", timeout=10) as response:
            timeline = json.loads(response.read())
    assert {r["run_id"] for r in runs["runs"]} == {"with-steps", "run-0", "run-1", "run-2"}
    assert [s["key"] for s in timeline["steps"]] == ["a"]


@pytest.fixture
def immutable_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "frozen.db"
    asyncio.run(populate(path))
    made = sh("chattr", "+i", str(path))
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not possible here ({made.stderr.strip() or 'no chattr'})")
    try:
        yield path
    finally:
        sh("chattr", "-i", str(path))


async def test_an_immutable_file_is_read_and_a_write_says_it_is_read_only(immutable_file: Path) -> None:
    async with SQLiteStore(immutable_file) as store:
        await reads_everything(store)
        with pytest.raises(StoreError, match="read-only") as raised:
            await store.create_run(run("new", 1.0))
        assert str(immutable_file) in str(raised.value) and "may not write the file" in str(raised.value)
        with pytest.raises(StoreError, match="read-only"):
            await store.save_step(lease_of(make_run("with-steps", owner="me")), make_step("with-steps", "b"))
        await reads_everything(store)


async def test_a_read_only_file_of_an_older_schema_says_it_must_be_upgraded(
    read_only_mount: tuple[Path, Path],
) -> None:
    writable, mounted = read_only_mount
    with sqlite3.connect(writable / "old.db", isolation_level=None) as db:
        for statement in MIGRATIONS[1].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("INSERT INTO durable_meta VALUES ('application', 'durable'), ('schema_version', '1')")
        db.execute("PRAGMA journal_mode = WAL")
    db.close()
    with pytest.raises(StoreError, match=r"read-only and holds schema 1, which must be upgraded") as raised:
        await SQLiteStore(mounted / "old.db").open()
    assert str(mounted / "old.db") in str(raised.value)


@pytest.mark.parametrize("version", ["0", "-1", "abc", "", " 2", "²", None])
async def test_a_schema_version_no_release_wrote_is_store_corrupted_naming_file_and_version(
    tmp_path: Path, version: str | None
) -> None:
    path = tmp_path / "odd.db"
    await populate(path)
    with sqlite3.connect(path) as db:
        if version is None:
            db.execute("DELETE FROM durable_meta WHERE key = 'schema_version'")
        else:
            db.execute("UPDATE durable_meta SET value = ? WHERE key = 'schema_version'", (version,))
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreCorrupted) as raised:
        await SQLiteStore(path).open()
    message = str(raised.value)
    assert str(path) in message and f"schema version {version!r}" in message, message
    assert raised.value.store == str(path)
    assert path.read_bytes() == before
    assert SCHEMA_VERSION >= 2
