"""wf.fork and durable runs fork (issue 19): a fork from step k executes only steps k.. on a real
store (SQLite, PostgreSQL), records where it came from, and leaves the original byte-identical."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow
from durable.errors import ConfigurationError, RunFailed, UnknownRunError
from durable.store import RunStatus
from durable_contract_tests import server_url

from helpers import Calls

DURABLE = [sys.executable, "-c", "from durable.cli import main; main()"]


class Backend:
    """A real store, and a dump of one run's rows straight from its tables."""

    def __init__(self, url: str, dump: Callable[[str], Any]) -> None:
        self.url, self.dump = url, dump


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "fork.db"

        async def dump_sqlite(run_id: str) -> list[Any]:
            db = sqlite3.connect(path)
            try:
                return [
                    (table, row)
                    for table in ("runs", "steps", "signals")
                    for row in db.execute(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY 1, 2", (run_id,))
                ]
            finally:
                db.close()

        yield Backend(f"sqlite:///{path}", dump_sqlite)
        return
    pytest.importorskip("durable_postgres")
    import asyncpg

    base = server_url("postgres", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"fork_{secrets.token_hex(4)}"

    async def dump_postgres(run_id: str) -> list[Any]:
        conn = await asyncpg.connect(base)
        try:
            rows = []
            for table in ("runs", "steps", "signals", "runs_live"):
                found = await conn.fetch(
                    f'SELECT xmin::text AS v, row_to_json(t)::text AS r FROM "{schema}".{table} t '
                    "WHERE run_id = $1",
                    run_id,
                )
                rows += sorted((table, row["v"], row["r"]) for row in found)
            return rows
        finally:
            await conn.close()

    yield Backend(f"{base}{'&' if '?' in base else '?'}schema={schema}", dump_postgres)
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def pipeline(url: str, calls: Calls, *, fixed: bool) -> tuple[Workflow, Any]:
    """Five steps; step 4 has a bug until ``fixed``."""
    wf = Workflow("etl", db=url, default_retries=0)

    @wf.task
    async def step(n: int) -> int:
        calls(f"step {n}")
        if n == 4 and not fixed:
            raise ValueError("bug in step 4")
        return n

    @wf.workflow(id="etl-{day}")
    async def etl(day: str) -> list[int]:
        return [await step.with_step_id(f"s{n}")(n) for n in range(1, 6)]

    return wf, etl


async def test_a_fork_from_step_k_executes_only_steps_k_on_and_leaves_the_original_as_it_was(
    backend: Backend,
) -> None:
    calls = Calls()
    buggy, etl = pipeline(backend.url, calls, fixed=False)
    async with buggy:
        with pytest.raises(ValueError, match="bug in step 4"):
            await etl("mon")
    assert calls.log == ["step 1", "step 2", "step 3", "step 4"]
    before = await backend.dump("etl-mon")
    assert before

    calls.log.clear()
    fixed, _ = pipeline(backend.url, calls, fixed=True)
    async with fixed:
        original = [s.key for s in await fixed.get_steps("etl-mon")]
        assert original == ["step@s1", "step@s2", "step@s3", "step@s4"]
        fork_id = await fixed.fork("etl-mon", from_step="step@s3", new_run_id="etl-mon-again")
        assert fork_id == "etl-mon-again"
        forked = await fixed.get_run(fork_id)
        assert forked is not None and forked.status is RunStatus.WAITING  # due: a worker takes it
        assert [s.key for s in await fixed.get_steps(fork_id)] == ["step@s1", "step@s2", "durable:fork"]
        assert calls.log == []  # forking executes nothing

        stop = asyncio.Event()
        worker = asyncio.create_task(fixed.worker(poll_interval=0.01).run(stop))
        assert await fixed.wait_for(fork_id, timeout=20) == [1, 2, 3, 4, 5]
        stop.set()
        await worker
        steps = {s.key: s for s in await fixed.get_steps(fork_id)}
        assert json.loads(steps["durable:fork"].result or "") == {
            "run_id": "etl-mon",
            "from_step": "step@s3",
            "copied": 2,
        }
    assert calls.log == ["step 3", "step 4", "step 5"]  # steps 1 and 2 were not executed again
    assert await backend.dump("etl-mon") == before  # the original, row for row (and row version)


async def test_a_fork_copies_the_deliveries_its_copied_waits_consumed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    calls = Calls()
    wf = Workflow("app", db=url, default_retries=0)

    @wf.task
    async def use(value: int) -> int:
        calls(f"use {value}")
        return value

    @wf.workflow(id="two")
    async def two() -> int:
        first = await use(await wf.signal("n"))
        second = await use.with_step_id("again")(await wf.signal("n"))
        return first + second

    async with wf:
        await wf.complete("two", "n", 1, delivery_id="a")
        await wf.complete("two", "n", 2, delivery_id="b")
        assert await two() == 3
        fork_id = await wf.fork("two", from_step="durable:signal@n#1")
        assert fork_id.startswith("two.fork-")
        assert [s.delivery_id for s in await wf.get_signals(fork_id)] == ["a"]  # the first wait's only
        await wf.complete(fork_id, "n", 40, delivery_id="c")
        assert await wf.resume(fork_id) == 41
    assert calls.log == ["use 1", "use 2", "use 40"]


async def test_forking_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    calls = Calls()
    wf, etl = pipeline(f"sqlite:///{tmp_path / 'w.db'}", calls, fixed=True)
    async with wf:
        await etl("tue")
        with pytest.raises(UnknownRunError, match="no run 'nope'"):
            await wf.fork("nope", from_step="step@s1")
        with pytest.raises(
            ConfigurationError, match=r"run 'etl-tue' from step 'step@s9'.*no such step"
        ) as caught:
            await wf.fork("etl-tue", from_step="step@s9")
        assert (caught.value.run_id, caught.value.step_key) == ("etl-tue", "step@s9")
        await wf.fork("etl-tue", from_step="step@s2", new_run_id="copy")
        with pytest.raises(ConfigurationError, match="'copy': a run with that id exists already"):
            await wf.fork("etl-tue", from_step="step@s2", new_run_id="copy")
        with pytest.raises(ConfigurationError, match="reserved"):
            await wf.fork("etl-tue", from_step="step@s2", new_run_id="x/durable:child@y")


def test_durable_runs_fork_and_show(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    calls = Calls()
    wf, etl = pipeline(url, calls, fixed=False)

    async def record() -> None:
        async with wf:
            with pytest.raises(ValueError):
                await etl("wed")

    asyncio.run(record())
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}

    def durable(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*DURABLE, *args], capture_output=True, text=True, timeout=60, env=env)

    done = durable("runs", "fork", "etl-wed", "--from-step", "step@s4", "--new-run-id", "w2", "--store", url)
    assert done.returncode == 0, done.stderr
    assert "run 'w2' forked from run 'etl-wed' at step 'step@s4' (3 step(s) copied)" in done.stdout
    shown = durable("runs", "show", "w2", "--store", url)
    assert shown.returncode == 0, shown.stderr
    assert "forked from" in shown.stdout and "run etl-wed at step step@s4" in shown.stdout
    as_json = json.loads(
        durable("runs", "fork", "etl-wed", "--from-step", "step@s1", "--store", url, "--json").stdout
    )
    assert as_json["forked_from"] == "etl-wed" and as_json["status"] == "waiting"
    missing = durable("runs", "fork", "etl-wed", "--from-step", "nope", "--store", url)
    assert missing.returncode == 1 and "no such step" in missing.stderr

    async def finish() -> Any:
        fixed, _ = pipeline(url, calls, fixed=True)
        async with fixed:
            return await fixed.resume("w2")

    calls.log.clear()
    assert asyncio.run(finish()) == [1, 2, 3, 4, 5]
    assert calls.log == ["step 4", "step 5"]


async def test_a_forked_run_that_fails_again_is_a_failed_run_of_its_own(tmp_path: Path) -> None:
    calls = Calls()
    wf, etl = pipeline(f"sqlite:///{tmp_path / 'w.db'}", calls, fixed=False)
    async with wf:
        with pytest.raises(ValueError):
            await etl("thu")
        fork_id = await wf.fork("etl-thu", from_step="step@s4")
        with pytest.raises(ValueError, match="bug in step 4"):
            await wf.resume(fork_id)
        with pytest.raises(RunFailed):
            await wf.wait_for(fork_id, timeout=5)
        original = await wf.get_run("etl-thu")
        assert original is not None and original.status is RunStatus.FAILED
    assert calls.log == ["step 1", "step 2", "step 3", "step 4", "step 4"]
