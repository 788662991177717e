"""One damaged run record never stops a fleet (issue 16, items 1 and 7).

A record an operator or a bug damaged (a status no release writes, text in a time column, a
missing field) reads as a ``corrupt`` run: polls and listings skip it, the worker executes every
healthy run of its own, ``durable runs check`` lists it, and nothing in the store is changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from durable import RunStatus, Workflow
from durable.cli import cli
from durable.errors import StoreCorrupted

Damage = Callable[[str, str], Awaitable[None]]
"""Damages one run's ``field`` (``status`` or ``wake_at``)."""
Backend = tuple[str, Damage, Callable[[], Awaitable[Any]]]
"""A store URL, how to damage one of its runs, and a dump of its run records."""


def _sqlite(tmp_path: Path) -> Backend:
    path = tmp_path / "corrupt.db"

    async def damage(run_id: str, field: str) -> None:
        value = {"status": "bogus", "wake_at": "soon"}[field]
        with sqlite3.connect(path) as conn:
            if field == "wake_at":
                conn.execute("UPDATE runs SET status = 'waiting' WHERE run_id = ?", (run_id,))
            conn.execute(f"UPDATE runs SET {field} = ? WHERE run_id = ?", (value, run_id))

    async def dump() -> Any:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT * FROM runs ORDER BY run_id").fetchall()

    return f"sqlite:///{path}", damage, dump


def _redis(prefix: str) -> Backend:
    url = os.environ.get("DURABLE_TEST_REDIS_URL")
    if not url:
        pytest.skip("set DURABLE_TEST_REDIS_URL to run this on Redis")
    import redis.asyncio as aioredis

    async def damage(run_id: str, field: str) -> None:
        value = {"status": "bogus", "wake_at": "soon"}[field]
        client = aioredis.Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*{run_id}*:run")]
            assert len(keys) == 1, keys
            if field == "wake_at":
                await client.hset(keys[0], "status", "waiting")
            await client.hset(keys[0], field, value)
        finally:
            await client.aclose()

    async def dump() -> Any:
        client = aioredis.Redis.from_url(url)
        try:
            keys = sorted([key async for key in client.scan_iter(match=f"{prefix}:*:run")])
            return [(key, await client.hgetall(key)) for key in keys]
        finally:
            await client.aclose()

    return f"{url}?prefix={prefix}", damage, dump


@pytest.fixture(params=["sqlite", "redis"])
def damaged_store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    return _redis(f"corrupt-{secrets.token_hex(4)}")


async def test_a_worker_executes_every_run_of_its_own_past_corrupt_records_and_foreign_runs(
    damaged_store: Backend,
) -> None:
    url, damage, dump = damaged_store
    executed: list[int] = []
    other = Workflow("other", db=url)

    @other.workflow(id="other-{n}")
    async def foreign(n: int) -> int:
        return n

    wf = Workflow("mine", db=url)

    @wf.task
    async def work(n: int) -> int:
        executed.append(n)
        return n

    @wf.workflow(id="mine-{n}")
    async def own(n: int) -> int:
        return await work(n)

    await own.start(0)  # the oldest: behind it, the damaged ones, then the foreign runs
    await own.start(1)
    await own.start(2)
    for n in range(40):
        await foreign.start(n)
    for n in range(3, 6):
        await own.start(n)
    await damage("mine-1", "status")
    await damage("mine-2", "wake_at")
    before = await dump()

    worker = wf.worker(concurrency=4, poll_interval=0.02)
    stop = asyncio.Event()
    working = asyncio.create_task(worker.run(stop))
    try:
        for n in (0, 3, 4, 5):
            assert await wf.wait_for(f"mine-{n}", timeout=20) == n
    finally:
        stop.set()
        await working
    assert sorted(executed) == [0, 3, 4, 5]  # each healthy run once, no damaged one
    # (Whether the poll saw the damaged runs at all depends on the store's due-run query.)
    assert worker.corrupt_runs <= {"mine-1", "mine-2"}

    listed = {run.run_id: run for run in await wf.list_runs(limit=100)}
    assert len(listed) == 46  # a damaged record is listed, not dropped or raised
    assert listed["mine-1"].status is RunStatus.CORRUPT and listed["mine-2"].status is RunStatus.CORRUPT
    with pytest.raises(StoreCorrupted) as raised:
        await wf.wait_for("mine-1", timeout=1)
    assert raised.value.run_id == "mine-1" and raised.value.field == "status"
    with pytest.raises(StoreCorrupted) as raised:
        await own(2)  # calling it directly refuses too, naming the field
    assert raised.value.run_id == "mine-2" and raised.value.field == "wake_at"

    changed = [row for row in await dump() if row not in before]
    assert len(changed) == 4, changed  # the four completed runs; the damaged records are untouched
    await wf.close()
    await other.close()

    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["runs", "check", "--store", url, "--json"], catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    found = {d["run_id"]: d["field"] for d in json.loads(result.output)}
    assert found == {"mine-1": "status", "mine-2": "wake_at"}
    listing = await asyncio.to_thread(
        CliRunner().invoke, cli, ["runs", "list", "--store", url, "--prefix", "mine-"], catch_exceptions=False
    )
    assert listing.exit_code == 0, listing.output
    assert listing.output.count("corrupt") >= 2
