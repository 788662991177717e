"""``check_replay(store=URL)``: the replay reads the store it checks, also where the workflow body
itself asks its Workflow for the store (``wf.get_run``, ``wf.get_event``, ``wf.complete``), and
the Workflow's own store is neither opened nor created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from durable import RunStatus, Workflow


def shop(db: str) -> tuple[Workflow, Any, Any]:
    """One app whose workflow body reads another run's record through its Workflow."""
    wf = Workflow("shop", db=db, default_retries=0)

    @wf.task
    async def price(sku: str) -> int:
        return len(sku)

    @wf.workflow(id="catalog")
    async def catalog() -> str:
        return "v1"

    @wf.workflow(id="order-{n}")
    async def order(n: int) -> str:
        listed = await wf.get_run("catalog")  # not a step: read again by every execution
        if listed is None or listed.status is not RunStatus.COMPLETED:
            raise LookupError("no catalog")
        return f"{listed.result}:{await price('abc')}"

    return wf, catalog, order


async def test_check_replay_of_another_store_replays_against_that_store_only(tmp_path: Path) -> None:
    recorded = f"sqlite:///{tmp_path / 'recorded.db'}"
    production, catalog, order = shop(recorded)
    await catalog()
    assert await order(1) == '"v1":3'
    await production.close()
    before = (tmp_path / "recorded.db").read_bytes()

    app, _, _ = shop(f"sqlite:///{tmp_path / 'app.db'}")
    report = await app.check_replay(store=recorded, statuses=["completed"])
    assert [(r.run_id, r.compatible, r.outcome) for r in sorted(report.results, key=lambda r: r.run_id)] == [
        ("catalog", True, "completed"),
        ("order-1", True, "completed"),
    ], str(report)
    assert not (tmp_path / "app.db").exists()  # the app's own store: neither opened nor created
    assert (tmp_path / "recorded.db").read_bytes() == before
    await app.close()


async def test_a_write_the_body_makes_outside_a_step_is_refused_not_made_in_the_apps_store(
    tmp_path: Path,
) -> None:
    recorded = f"sqlite:///{tmp_path / 'recorded.db'}"

    def notifier(db: str) -> tuple[Workflow, Any]:
        wf = Workflow("notify", db=db, default_retries=0)

        @wf.workflow(id="notify")
        async def notify() -> bool:
            return await wf.complete("elsewhere", "ping", 1)  # not a step: made by every execution

        return wf, notify

    production, notify = notifier(recorded)
    assert await notify() is True
    await production.close()
    before = (tmp_path / "recorded.db").read_bytes()

    app, _ = notifier(f"sqlite:///{tmp_path / 'app.db'}")
    (result,) = (await app.check_replay(store=recorded, statuses=["completed"])).results
    assert not result.compatible and "WriteRefused" in result.message, result.message
    assert not (tmp_path / "app.db").exists()
    assert (tmp_path / "recorded.db").read_bytes() == before
    await app.close()


async def test_the_checked_sqlite_file_is_opened_for_reading_only(tmp_path: Path) -> None:
    from durable_sqlite import SQLiteStore

    url = f"sqlite:///{tmp_path / 'prod.db'}"
    wf, catalog, _ = shop(url)
    async with wf:
        await catalog()
    opened: list[dict[str, Any]] = []

    class Spied(SQLiteStore):
        async def open(self, *, create: bool = True, read_only: bool | None = None) -> None:
            opened.append({"create": create, "read_only": read_only})
            await super().open(create=create, read_only=read_only)

    checker, _, _ = shop(f"sqlite:///{tmp_path / 'app.db'}")
    checked = Spied(str(tmp_path / "prod.db"))
    try:
        report = await checker.check_replay(store=checked, statuses=["completed"])
        assert report.ok and len(report.results) == 1
        assert opened == [{"create": False, "read_only": True}]
    finally:
        await checked.close()
    assert not (tmp_path / "app.db").exists()


async def test_an_app_with_queues_replays_its_queued_runs(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite:///{tmp_path / 'q.db'}"

    def app() -> tuple[Workflow, Any]:
        wf = Workflow("queued", db=url, default_retries=0)
        wf.queue("jobs", concurrency=1)

        @wf.task
        async def work(n: int) -> int:
            return n * 2

        @wf.workflow(id="job-{n}", queue="jobs")
        async def job(n: int) -> int:
            return await work(n)

        return wf, job

    wf, job = app()
    async with wf:
        run_id = await job.start(n=4)
        stop = asyncio.Event()
        worker = asyncio.create_task(wf.worker(poll_interval=0.01).run(stop))
        try:
            assert await wf.wait_for(run_id, timeout=30) == 8
        finally:
            stop.set()
            await worker
    before = (tmp_path / "q.db").read_bytes()
    checker, _ = app()
    report = await checker.check_replay(store=url, statuses=["completed"])
    assert report.ok, report
    assert [r.run_id for r in report.results] == [run_id]
    assert (tmp_path / "q.db").read_bytes() == before


DURABLE = ["-c", "from durable.cli import main; main()"]
QUEUED_APP = """
import sys
from durable import Workflow

wf = Workflow("queued", db="sqlite:///app.db", default_retries=0)
wf.queue("jobs", concurrency=1)

@wf.task
async def work(n: int) -> int:
    return n * 2

@wf.workflow(id="job-{n}", queue="jobs")
async def job(n: int) -> int:
    return await work(n)
"""


def test_durable_replay_of_an_app_with_queues(tmp_path: Path) -> None:
    import asyncio
    import os
    import subprocess
    import sys

    (tmp_path / "queued_app.py").write_text(QUEUED_APP)
    url = f"sqlite:///{tmp_path / 'prod.db'}"

    async def record() -> None:
        sys.path.insert(0, str(tmp_path))
        try:
            import queued_app
        finally:
            sys.path.remove(str(tmp_path))
        queued_app.wf.use_store(url)
        async with queued_app.wf:
            run_id = await queued_app.job.start(n=3)
            stop = asyncio.Event()
            worker = asyncio.create_task(queued_app.wf.worker(poll_interval=0.01).run(stop))
            try:
                assert await queued_app.wf.wait_for(run_id, timeout=30) == 6
            finally:
                stop.set()
                await worker

    asyncio.run(record())
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    replayed = subprocess.run(
        [sys.executable, *DURABLE, "replay", "queued_app:wf", "--store", url, "--status", "completed"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "job-3" in replayed.stdout and "every one replays" in replayed.stdout
    assert not (tmp_path / "app.db").exists()  # the app's own store is never opened
