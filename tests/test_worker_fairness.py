"""A worker asks the store only for due runs of the workflows it defines, oldest first: runs of
foreign workflows cannot crowd out its own, and old runs are not starved by new ones."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import pytest

from durable import RunStatus, Workflow
from durable_memory import InMemoryStore


@pytest.fixture(params=["memory", "sqlite", "redis"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str | InMemoryStore:
    """What two Workflow objects pass as ``db=`` to share one store."""
    if request.param == "memory":
        return InMemoryStore()
    if request.param == "redis":
        redis = os.environ.get("DURABLE_TEST_REDIS_URL")
        if not redis:
            pytest.skip("set DURABLE_TEST_REDIS_URL to run this on Redis")
        return f"{redis}?prefix=fair-{secrets.token_hex(4)}"
    return f"sqlite:///{tmp_path / 'fair.db'}"


async def test_a_worker_executes_its_own_run_behind_many_foreign_ones(db: str | InMemoryStore) -> None:
    other = Workflow("other", db=db)

    @other.workflow(id="other-{n}")
    async def foreign(n: int) -> int:
        return n

    mine = Workflow("mine", db=db)

    @mine.workflow(id="mine")
    async def own() -> str:
        return "done"

    for n in range(40):
        await foreign.start(n)
    await own.start()
    worker = mine.worker(concurrency=16, poll_interval=0.02)
    await worker.poll_once()
    for _ in range(200):
        run = await mine.get_run("mine")
        if run is not None and run.status is RunStatus.COMPLETED:
            break
        await asyncio.sleep(0.01)
    assert run is not None and run.status is RunStatus.COMPLETED
    assert worker.resumed == 1
    assert worker.unknown_runs == {f"other-{n}": "foreign" for n in range(40)}  # reported, not run
    pending = await other.list_runs(statuses=frozenset({RunStatus.PENDING}))
    assert len(pending) == 40
    store = await mine.get_store()
    if hasattr(store, "drop_all"):  # Redis: leave the shared server as it was
        await store.drop_all()
    await other.close()
    await mine.close()


async def test_due_runs_come_oldest_first_and_only_of_the_workflows_asked_for() -> None:
    wf = Workflow("order", db="memory://")

    @wf.workflow(id="a-{n}")
    async def a(n: int) -> None: ...

    @wf.workflow(id="b-{n}")
    async def b(n: int) -> None: ...

    for n in range(3):
        await a.start(n)
        await b.start(n)
    store = await wf.get_store()
    due = await store.due_runs(time.time() + 1, limit=10, workflows=frozenset({"a"}))
    assert [r.run_id for r in due] == ["a-0", "a-1", "a-2"]
    assert [r.run_id for r in await store.due_runs(time.time() + 1, limit=2)] == ["a-0", "b-0"]
