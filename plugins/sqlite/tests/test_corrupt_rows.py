"""Rows damaged by hand or by other software (issue 16, items 1 and 7): every run record is read
through ``durable._decode``, so a bad one reads as a corrupt run naming its field and never breaks
a listing, a poll or ``get_run``; a bad step or signal row raises ``StoreCorrupted`` naming the
run and the field. Nothing in the file is changed by reading it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from durable.errors import StoreCorrupted
from durable.store import RunQuery, RunRecord, RunStatus
from durable_contract_tests._kit import lease_of, make_run, make_step
from durable_sqlite import SQLiteStore

# run id -> (SQL that damages it, the field its corrupt record names)
RUN_DAMAGE: dict[str, tuple[str, str]] = {
    "soon": ("UPDATE runs SET status = 'waiting', wake_at = 'soon' WHERE run_id = 'soon'", "wake_at"),
    "bogus": ("UPDATE runs SET status = 'bogus' WHERE run_id = 'bogus'", "status"),
    "text-created": ("UPDATE runs SET created_at = 'yesterday' WHERE run_id = 'text-created'", "created_at"),
    "text-lease": (
        "UPDATE runs SET owner = 'o', lease_expires_at = 'later' WHERE run_id = 'text-lease'",
        "lease_expires_at",
    ),
    "text-token": ("UPDATE runs SET lease_token = 'one' WHERE run_id = 'text-token'", "lease_token"),
    "blob-inputs": ("UPDATE runs SET inputs = X'00ff' WHERE run_id = 'blob-inputs'", "inputs"),
    "flag-7": ("UPDATE runs SET cancel_requested = 7 WHERE run_id = 'flag-7'", "cancel_requested"),
    "bad-error": ("UPDATE runs SET status = 'failed', error = 'oops' WHERE run_id = 'bad-error'", "error"),
}


@pytest.fixture
async def damaged(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, Path]]:
    path = tmp_path / "damaged.db"
    store = SQLiteStore(path)
    await store.open()
    now = time.time()
    for i, run_id in enumerate(["healthy-old", *RUN_DAMAGE, "null-id", "healthy-new"]):
        await store.create_run(RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", now + i, now))
    with sqlite3.connect(path) as db:
        for sql, _ in RUN_DAMAGE.values():
            db.execute(sql)
        db.execute("UPDATE runs SET run_id = NULL WHERE run_id = 'null-id'")  # a TEXT key may be NULL
    db.close()
    yield store, path
    await store.close()


def dump(path: Path) -> list[Any]:
    with sqlite3.connect(path) as db:
        rows = [
            db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("runs", "steps", "signals")
        ]
    db.close()
    return rows


async def test_damaged_run_rows_read_as_corrupt_runs_naming_the_field(
    damaged: tuple[SQLiteStore, Path],
) -> None:
    store, path = damaged
    before = dump(path)
    for run_id, (_, field) in RUN_DAMAGE.items():
        run = await store.get_run(run_id)
        assert run is not None and run.status is RunStatus.CORRUPT and run.run_id == run_id
        assert f"field {field!r}" in (run.error or ""), run.error
        assert str(path) in (run.error or "")
    healthy = await store.get_run("healthy-new")
    assert healthy is not None and healthy.status is RunStatus.PENDING

    listed = await store.list_runs(RunQuery(limit=100))
    by_id = {run.run_id: run for run in listed}
    assert len(listed) == len(RUN_DAMAGE) + 3
    assert {run_id for run_id, run in by_id.items() if run.status is RunStatus.CORRUPT} == {
        *RUN_DAMAGE,
        "None",
    }
    assert by_id["healthy-old"].status is RunStatus.PENDING
    assert await store.list_runs(RunQuery(workflow="wf", limit=100)) == listed
    pending = await store.list_runs(RunQuery(statuses=frozenset({RunStatus.PENDING}), limit=100))
    assert {run.run_id for run in pending} >= {"healthy-old", "healthy-new"}

    due = await store.due_runs(time.time(), limit=100)  # never raises; skips what its query can tell
    assert {run.run_id for run in due} >= {"healthy-old", "healthy-new"}
    assert not {"soon", "bogus", "text-lease"} & {run.run_id for run in due}
    assert dump(path) == before


async def test_writes_returning_a_damaged_run_return_it_as_corrupt(damaged: tuple[SQLiteStore, Path]) -> None:
    store, _ = damaged
    cancelled = await store.request_cancel("text-created")
    assert cancelled is not None and cancelled.status is RunStatus.CORRUPT
    reset = await store.reset_run("blob-inputs")
    assert reset is not None and reset.status is RunStatus.CORRUPT
    reset = await store.reset_run("bad-error")  # a failed run's reset clears its damaged error
    assert reset is not None and reset.status is RunStatus.PENDING and reset.error is None
    existing, created = await store.create_run(make_run("bogus"))
    assert not created and existing.status is RunStatus.CORRUPT


async def test_a_damaged_step_row_raises_store_corrupted_naming_the_run_and_step(tmp_path: Path) -> None:
    path = tmp_path / "steps.db"
    damages = {
        "status": "UPDATE steps SET status = 'bogus'",
        "finished_at": "UPDATE steps SET finished_at = 'later'",
        "result": "UPDATE steps SET result = NULL",
        "task": "UPDATE steps SET task = X'01'",
        "attempts": "UPDATE steps SET attempts = 'twice'",
    }
    async with SQLiteStore(path) as store:
        for field in damages:
            run = make_run(f"run-{field}", owner="me")
            await store.create_run(run)
            for key in ("a", "b"):
                await store.save_step(lease_of(run), make_step(run.run_id, key))
        with sqlite3.connect(path) as db:
            for field, sql in damages.items():
                db.execute(f"{sql} WHERE run_id = ? AND key = 'b'", (f"run-{field}",))
        db.close()
        before = dump(path)
        for field in damages:
            with pytest.raises(StoreCorrupted) as raised:
                await store.load_steps(f"run-{field}")
            error = raised.value
            assert error.run_id == f"run-{field}" and error.field == f"step 'b': {field}", error
            assert str(path) in str(error)
            run = await store.get_run(f"run-{field}")  # the run itself still reads
            assert run is not None and run.status is RunStatus.RUNNING
        with pytest.raises(StoreCorrupted, match="step 'b': result"):
            # A checkpoint meeting a completed row (the first completed writer wins) reads it back.
            await store.save_step(lease_of(make_run("run-result", owner="me")), make_step("run-result", "b"))
        assert dump(path) == before


async def test_a_damaged_signal_row_raises_store_corrupted_naming_the_delivery(tmp_path: Path) -> None:
    path = tmp_path / "signals.db"
    async with SQLiteStore(path) as store:
        await store.create_run(make_run("r"))
        await store.send_signal("r", "go", "d1", '"p"')
        await store.send_signal("r", "go", "d2", '"p"')
        with sqlite3.connect(path) as db:
            db.execute("UPDATE signals SET sent_at = 'noon' WHERE delivery_id = 'd2'")
        db.close()
        for name in (None, "go"):
            with pytest.raises(StoreCorrupted) as raised:
                await store.list_signals("r", name)
            assert raised.value.run_id == "r" and raised.value.field == "signal 'go' delivery 'd2': sent_at"
