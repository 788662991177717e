"""durable replay and wf.check_replay (issue 19): a store recorded by version 1 of the example shop
(examples/deploys) is checked against version 2 (incompatible: exit 1 naming the run and the step)
and version 2 with a patch (compatible: exit 0), on SQLite and PostgreSQL, and no row of the store
changes (a dump before and after, PostgreSQL's row versions included)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow
from durable._read_only_store import ReadOnlyStore, WriteRefused
from durable.errors import UnknownRunError
from durable.store import RunQuery, RunStatus
from durable.testing.replay import assert_replays
from durable_contract_tests import server_url

DEPLOYS = Path(__file__).resolve().parent.parent / "examples" / "deploys"
DURABLE = [sys.executable, "-c", "from durable.cli import main; main()"]


def record_v1(url: str) -> str:
    """Run examples/deploys/v1/shop.py against ``url``: order-1 charged, order-2 before its charge."""
    done = subprocess.run(
        [sys.executable, "shop.py"],
        cwd=DEPLOYS / "v1",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DURABLE_STORE": url},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "order-1 waits; recorded: durable:version@1.0, reserve, charge" in done.stdout
    assert "order-2 waits; recorded: durable:version@1.0, reserve" in done.stdout
    return done.stdout


def replay(release: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``durable replay shop:wf --store URL`` run where release ``release`` of shop.py lives."""
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    return subprocess.run(
        [*DURABLE, "replay", "shop:wf", "--store", url, *args],
        cwd=DEPLOYS / release,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def sqlite_dump(path: Path) -> tuple[list[str], bytes]:
    """Every row of the file (read-only), and the file's bytes."""
    db = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    try:
        return list(db.iterdump()), path.read_bytes()
    finally:
        db.close()


async def postgres_dump(base: str, schema: str) -> list[str]:
    """Every row of every table of ``schema`` with its row version (``xmin`` changes on any write
    to the row, even one writing the same values)."""
    import asyncpg

    conn = await asyncpg.connect(base)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", schema
        )
        rows = []
        for t in tables:
            name = f'"{schema}"."{t["table_name"]}"'
            found = await conn.fetch(f"SELECT xmin::text AS v, row_to_json(t)::text AS r FROM {name} t")
            rows += sorted(f"{t['table_name']} {row['v']} {row['r']}" for row in found)
        return rows
    finally:
        await conn.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "shop.db"
    yield f"sqlite:///{path}", path


@pytest.fixture
def postgres_store() -> Iterator[tuple[str, str, str]]:
    base = server_url("postgres", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"replay_{secrets.token_hex(4)}"
    yield base, schema, f"{base}{'&' if '?' in base else '?'}schema={schema}"
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def check_the_three_releases(url: str) -> None:
    v1 = replay("v1", url)
    assert v1.returncode == 0, v1.stdout + v1.stderr

    v2 = replay("v2", url)
    assert v2.returncode == 1, v2.stdout + v2.stderr
    assert "run 'order-1': step 'charge': the journal recorded task 'charge'" in v2.stdout
    assert "2 run(s) checked: 1 incompatible with this code" in v2.stdout

    report = json.loads(replay("v2", url, "--json").stdout)
    verdicts = {r["run_id"]: (r["compatible"], r["outcome"], r["step_key"]) for r in report["runs"]}
    assert verdicts == {
        "order-1": (False, "incompatible", "charge"),
        "order-2": (True, "stopped", "durable:signal@approval"),  # not charged yet: new code is fine
    }
    assert (report["ok"], report["checked"], report["incompatible"]) == (False, 2, 1)

    patched = replay("v2_patched", url)
    assert patched.returncode == 0, patched.stdout + patched.stderr
    assert "2 run(s) checked: every one replays with this code" in patched.stdout
    report = json.loads(replay("v2_patched", url, "--json").stdout)
    assert {r["run_id"]: r["step_key"] for r in report["runs"]} == {
        "order-1": "durable:signal@shipped",  # replayed its charge through the old branch
        "order-2": "durable:signal@approval",
    }

    only = json.loads(replay("v2", url, "--run", "order-2", "--json").stdout)
    assert [r["run_id"] for r in only["runs"]] == ["order-2"] and only["ok"]
    none = replay("v2", url, "--status", "completed")
    assert none.returncode == 0 and "0 run(s) checked" in none.stdout
    bad = replay("v2", url, "--status", "runing")
    assert bad.returncode == 2 and "'runing' is not a valid RunStatus" in bad.stderr
    unknown = replay("v2", url, "--run", "order-9")
    assert unknown.returncode == 1 and "no run 'order-9'" in unknown.stderr


def test_replay_of_a_sqlite_store_recorded_by_v1_changes_no_row(sqlite_store: tuple[str, Path]) -> None:
    url, path = sqlite_store
    record_v1(url)
    before = sqlite_dump(path)
    check_the_three_releases(url)
    after = sqlite_dump(path)
    assert after[0] == before[0]
    assert after[1] == before[1]  # the file's bytes too


def test_replay_of_a_postgres_store_recorded_by_v1_changes_no_row(
    postgres_store: tuple[str, str, str],
) -> None:
    pytest.importorskip("durable_postgres")
    base, schema, url = postgres_store
    record_v1(url)
    before = asyncio.run(postgres_dump(base, schema))
    assert any(row.startswith("steps ") for row in before)
    check_the_three_releases(url)
    # Opened read-only, as the README recommends: the server itself refuses every write.
    check_the_three_releases(url + "&default_transaction_read_only=on")
    assert asyncio.run(postgres_dump(base, schema)) == before


def load(release: str) -> Workflow:
    """The Workflow of examples/deploys/<release>/shop.py, imported under a name of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"shop_{release}", DEPLOYS / release / "shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wf: Workflow = module.wf
    return wf


async def test_check_replay_in_python_and_the_pytest_helper(sqlite_store: tuple[str, Path]) -> None:
    url, path = sqlite_store
    await asyncio.to_thread(record_v1, url)
    before = sqlite_dump(path)

    v2 = load("v2")
    report = await v2.check_replay(store=url)
    assert not report.ok and [(r.run_id, r.step_key) for r in report.incompatible] == [("order-1", "charge")]
    assert "run 'order-1': step 'charge'" in str(report)
    with pytest.raises(AssertionError, match=r"order-1.*charge"):
        await assert_replays(v2, url)
    assert (await assert_replays(load("v2_patched"), url)).ok
    with pytest.raises(UnknownRunError, match="order-9"):
        await v2.check_replay(["order-9"], store=url)
    assert sqlite_dump(path) == before


async def test_replay_executes_nothing_and_stops_at_the_end_of_the_journal(tmp_path: Path) -> None:
    """Recorded steps, a signal, a sleep, a child and a patch return their recorded values; a step
    the journal lacks is where the check stops; no body runs and no write is made."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    executed: list[str] = []

    def app() -> tuple[Workflow, Any]:
        wf = Workflow("app", db=url, default_retries=0)

        @wf.task
        async def step(n: int) -> int:
            executed.append(f"step {n}")
            return n * 10

        @wf.workflow(id="child-{n}")
        async def child(n: int) -> int:
            return await step(n + 100)

        @wf.workflow(id="parent")
        async def parent() -> int:
            a = await step(1)
            b = await child(2)
            await wf.sleep(0)
            got = await wf.signal("go")
            if await wf.patched("p"):
                a += 1
            return a + b + got + await step(3)

        return wf, parent

    wf, parent = app()
    async with wf:
        run_id = await parent.start()
        stop = asyncio.Event()
        worker = asyncio.create_task(wf.worker(poll_interval=0.01).run(stop))
        await _wait_status(wf, run_id, RunStatus.WAITING)
        await wf.complete(run_id, "go", 5)
        await _wait_status(wf, run_id, RunStatus.COMPLETED)
        stop.set()
        await worker
    assert executed == ["step 1", "step 102", "step 3"]

    executed.clear()
    wf2, _ = app()
    report = await wf2.check_replay(store=url, statuses=[RunStatus.COMPLETED])
    assert {r.run_id: (r.compatible, r.outcome) for r in report.results} == {
        "parent": (True, "completed"),
        "parent/durable:child@child": (True, "completed"),
    }
    assert executed == []  # every value came from the journal


async def _wait_status(wf: Workflow, run_id: str, status: RunStatus) -> None:
    for _ in range(2000):
        run = await wf.get_run(run_id)
        if run is not None and run.status is status:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{run_id} never {status}")


async def test_a_renamed_task_or_a_step_inserted_before_recorded_ones_is_incompatible(tmp_path: Path) -> None:
    """A step the journal lacks, reached while the journal holds steps the code has not reached:
    the recorded run went another way (resuming it would execute the new step for real)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"

    def app(names: list[str]) -> tuple[Workflow, Any]:
        wf = Workflow("app", db=url, default_retries=0)
        tasks = {}
        for name in names:

            async def body() -> str:
                return "done"

            tasks[name] = wf.task(name=name)(body)

        @wf.workflow(id="run")
        async def flow() -> None:
            for name in names:
                await tasks[name]()
            await wf.signal("never")

        return wf, flow

    old, flow = app(["a", "b", "c"])
    async with old:
        await flow.start()
        await work_until_waiting(old, "run")

    for names, step in ((["a", "bill", "c"], "bill"), (["a", "x", "b", "c"], "x")):
        new, _ = app(names)
        (result,) = (await new.check_replay(store=url)).results
        assert (result.compatible, result.step_key) == (False, step), result
        assert "the recorded run went another way" in result.message
    same, _ = app(["a", "b", "c"])
    (result,) = (await same.check_replay(store=url)).results
    assert (result.compatible, result.outcome, result.step_key) == (True, "stopped", "durable:signal@never")
    fewer, _ = app(["a", "b"])  # c deleted: the wait comes where the old code ran c
    (result,) = (await fewer.check_replay(store=url)).results
    assert (result.compatible, result.step_key) == (False, "durable:signal@never")


async def work_until_waiting(wf: Workflow, run_id: str) -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(wf.worker(poll_interval=0.01).run(stop))
    try:
        await _wait_status(wf, run_id, RunStatus.WAITING)
    finally:
        stop.set()
        await worker


async def test_a_run_of_a_workflow_this_code_does_not_define_is_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    old = Workflow("app", db=url)

    @old.workflow(id="r")
    async def gone() -> None:
        await old.signal("x")

    async with old:
        await gone.start()
        await work_until_waiting(old, "r")
    new = Workflow("app", db=url)
    (result,) = (await new.check_replay(store=url)).results
    assert not result.compatible and "does not define workflow 'gone'" in result.message


async def test_the_read_only_store_refuses_every_write(tmp_path: Path) -> None:
    wf = Workflow("app", db=f"sqlite:///{tmp_path / 'w.db'}")
    async with wf:
        store = ReadOnlyStore(await wf.get_store())
        assert await store.list_runs(RunQuery()) == []
        with pytest.raises(WriteRefused, match=r"request_cancel.*run 'r'"):
            await store.request_cancel("r")
        with pytest.raises(WriteRefused):
            await store.send_signal("r", "s", "", "null")
