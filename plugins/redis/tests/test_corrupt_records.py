"""Damaged records on a real server (issue 16, items 1 and 7): a run hash an operator or a bug
damaged reads as a corrupt run naming its field (``durable._decode``), so polls, listings and a
worker go on with the healthy runs; a step or delivery that cannot be read raises
``StoreCorrupted`` naming the store, the run and the field; nothing else in the store changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_test_kit import lease_of, new_run, step

from durable import Workflow
from durable.errors import StoreCorrupted
from durable.store import Lease, RunQuery, RunRecord, RunStatus
from durable_redis import RedisStore

Damage = Callable[[redis.Redis, str], None]


def hset(field: str, value: str) -> Damage:
    return lambda admin, key: admin.hset(key, field, value)


def hdel(field: str) -> Damage:
    return lambda admin, key: admin.hdel(key, field)


def another_type(admin: redis.Redis, key: str) -> None:
    admin.delete(key)
    admin.rpush(key, "not a hash")


DAMAGES: dict[str, tuple[Damage, str]] = {
    "bogus status": (hset("status", "bogus"), "status"),
    "no inputs": (hdel("inputs"), "inputs"),
    "text created_at": (hset("created_at", "yesterday"), "created_at"),
    "text lease token": (hset("lease_token", "x"), "lease_token"),
    "text lease expiry": (hset("lease_expires_at", "soon"), "lease_expires_at"),
    "a list, not a hash": (another_type, "workflow"),
}


def records(admin: redis.Redis, store: RedisStore) -> dict[str, Any]:
    """Every run's, steps' and deliveries' key with its contents: what must not change."""
    found: dict[str, Any] = {}
    for key in admin.scan_iter(match=f"{store.prefix}:{{*", count=1000):  # test prefixes: no glob
        kind = admin.type(key)
        if kind == "hash":
            found[key] = admin.hgetall(key)
        elif kind == "list":
            found[key] = admin.lrange(key, 0, -1)
        else:
            found[key] = kind
    return found


def corrupt_field(run: RunRecord) -> str:
    assert run.status is RunStatus.CORRUPT and run.error is not None
    error = json.loads(run.error)
    assert error["type"] == "durable.errors.StoreCorrupted"
    assert repr(run.run_id) in error["message"] and "RedisStore" in error["store"]
    return str(error["field"])


async def test_damaged_run_records_read_as_corrupt_runs_and_break_no_poll_or_listing(
    store: RedisStore, admin: redis.Redis
) -> None:
    t = time.time() - 100
    healthy = []
    for i in range(4):  # two pending (due), two completed
        run = new_run(f"healthy-{i}", owner=None)
        run = RunRecord(**{**run.__dict__, "created_at": t + i, "updated_at": t + i})
        await store.create_run(run)
        if i >= 2:
            claimed = await store.claim_run(run.run_id, "owner-a", 60)
            assert claimed is not None
            await store.update_run(claimed, RunStatus.COMPLETED, result="1", release=True)
        healthy.append(run.run_id)
    for i, (name, (damage, _)) in enumerate(DAMAGES.items()):
        run = new_run(f"damaged-{name}", owner=None)
        run = RunRecord(**{**run.__dict__, "created_at": t + 10 + i, "updated_at": t + 10 + i})
        await store.create_run(run)  # pending: due, so every poll reads it
        damage(admin, store.keys.run_keys(run.run_id)[0])
    before = records(admin, store)

    for name, (_, field) in DAMAGES.items():
        run = await store.get_run(f"damaged-{name}")
        assert run is not None and corrupt_field(run) == field, name
    everything = await store.list_runs(RunQuery())
    assert len(everything) == len(healthy) + len(DAMAGES)
    fields = {run.run_id: corrupt_field(run) for run in everything if run.run_id.startswith("damaged-")}
    # The run whose created_at is text is listed at the time its index entry holds.
    assert fields == {f"damaged-{name}": field for name, (_, field) in DAMAGES.items()}
    assert [run.run_id for run in everything if run.status is not RunStatus.CORRUPT] == healthy[::-1]
    for statuses in ({RunStatus.PENDING}, {RunStatus.COMPLETED}, {RunStatus.PENDING, RunStatus.RUNNING}):
        listed = await store.list_runs(RunQuery(statuses=frozenset(statuses)))
        assert all(run.status in statuses for run in listed)
    # A corrupt record is listed under the workflow it names (none, for a key of another type).
    of_wf = [run.run_id for run in everything if run.workflow == "wf"]
    assert len(of_wf) == len(everything) - 1
    assert [run.run_id for run in await store.list_runs(RunQuery(workflow="wf", limit=3))] == of_wf[:3]
    due = await store.due_runs(time.time())
    assert [run.run_id for run in due] == ["healthy-0", "healthy-1"]  # never a corrupt run, never raised
    assert await store.due_runs(time.time(), workflows={"wf"}) == due
    assert records(admin, store) == before  # reading changed no record


async def test_a_worker_executes_every_healthy_run_past_damaged_records(
    store: RedisStore, admin: redis.Redis
) -> None:
    executed: list[int] = []
    wf = Workflow("fleet", db=store)

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        executed.append(n)
        return n

    for n in range(3):
        await job.start(n)
    for i, (damage, _) in enumerate(DAMAGES.values()):
        await job.start(100 + i)
        damage(admin, store.keys.run_keys(f"job-{100 + i}")[0])
    for n in range(3, 6):
        await job.start(n)
    before = {key: value for key, value in records(admin, store).items() if "job-10" in key}
    stop = asyncio.Event()
    working = asyncio.ensure_future(wf.worker(concurrency=2, poll_interval=0.02).run(stop))
    try:
        for n in range(6):
            assert await wf.wait_for(f"job-{n}", timeout=20) == n
    finally:
        stop.set()
        await working
    assert sorted(executed) == list(range(6))  # each healthy run once, no damaged one
    after = {key: value for key, value in records(admin, store).items() if "job-10" in key}
    assert after == before


Read = Callable[[RedisStore, str, Lease], Awaitable[Any]]
STEP_AND_DELIVERY_DAMAGES: dict[str, tuple[str, Callable[[redis.Redis, str], Any], Read, str]] = {
    # name: (the key damaged, how, the read that finds it, the field named)
    "bad step json": (
        "steps",
        lambda a, key: a.hset(key, "bad", "c[not json"),
        lambda s, r, _: s.load_steps(r),
        "step 'bad'",
    ),
    "short step": (
        "steps",
        lambda a, key: a.hset(key, "bad", 'c["t"]'),
        lambda s, r, _: s.load_steps(r),
        "step 'bad'",
    ),
    "unknown mark": (
        "steps",
        lambda a, key: a.hset(key, "bad", "x[]"),
        lambda s, r, _: s.load_steps(r),
        "step 'bad'",
    ),
    "steps not a hash": ("steps", another_type, lambda s, r, _: s.load_steps(r), "steps"),
    "checkpoint on it": (
        "steps",
        another_type,
        lambda s, r, lease: s.save_step(lease, step(r, "k")),
        "steps",
    ),
    "bad delivery": (
        "sigs",
        lambda a, key: a.rpush(key, "garbage"),
        lambda s, r, _: s.list_signals(r),
        "signals[1]",
    ),
    "sigs not a list": (
        "sigs",
        lambda a, key: a.set(key, "x"),
        lambda s, r, _: s.list_signals(r, "go"),
        "signals",
    ),
    "dedupe not a hash": (
        "delivered",
        lambda a, key: a.set(key, "x"),
        lambda s, r, _: s.send_signal(r, "go", "d", "1"),
        "signals",
    ),
    "run key not a hash": (
        "run",
        lambda a, key: a.set(key, "x"),
        lambda s, r, lease: s.renew_lease(lease, 30),
        "run",
    ),
}


@pytest.mark.parametrize("damage", list(STEP_AND_DELIVERY_DAMAGES))
async def test_a_step_or_delivery_that_cannot_be_read_raises_store_corrupted_naming_run_and_field(
    store: RedisStore, admin: redis.Redis, damage: str
) -> None:
    kind, spoil, read, field = STEP_AND_DELIVERY_DAMAGES[damage]
    run = new_run("broken")
    await store.create_run(run)
    lease = lease_of(run)
    await store.save_step(lease, step("broken", "fine"))
    await store.send_signal("broken", "go", "", '"x"')
    keys = dict(zip(("run", "steps", "sigs", "delivered"), store.keys.run_keys("broken"), strict=True))
    spoil(admin, keys[kind])
    with pytest.raises(StoreCorrupted) as raised:
        await read(store, "broken", lease)
    error = raised.value
    assert (error.run_id, error.field, error.store) == ("broken", field, store.label)
    assert "'broken'" in str(error) and field in str(error)


WORKER_APP = """
import os

from durable import Workflow

wf = Workflow("fleet", db="memory://")  # the command line points it at the real store


@wf.workflow(id="job-{n}")
async def job(n: int) -> int:
    with open(os.environ["EXECUTED_LOG"], "a") as log:  # a side effect per execution
        log.write(f"{n}\\n")
    return n
"""


async def test_the_durable_worker_command_executes_every_healthy_run_and_keeps_running(
    store: RedisStore, admin: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    # Issue 16, item 1: `HSET <prefix>:{id}:run status bogus` killed `durable worker` (exit 1).
    (tmp_path / "fleetapp.py").write_text(WORKER_APP)
    executed = tmp_path / "executed.log"
    executed.touch()
    wf = Workflow("fleet", db=store)

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return n

    for n in range(2):
        await job.start(n)
    for i, (damage, _) in enumerate(DAMAGES.values()):
        await job.start(100 + i)
        damage(admin, store.keys.run_keys(f"job-{100 + i}")[0])
    before = {key: value for key, value in records(admin, store).items() if "job-10" in key}
    url = f"{redis_url}?prefix={store.prefix}"
    environment = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    search = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment.update(PYTHONPATH=os.pathsep.join(search), EXECUTED_LOG=str(executed))
    durable = Path(sys.executable).with_name("durable")
    worker = await asyncio.create_subprocess_exec(
        str(durable), "worker", "fleetapp:wf", "--store", url, "--poll", "0.05",
        cwd=tmp_path, stderr=asyncio.subprocess.PIPE, env=environment,
    )  # fmt: skip
    try:
        for n in range(2):
            assert await wf.wait_for(f"job-{n}", timeout=30) == n
        for n in range(2, 4):  # started while the damaged records are there: taken too
            await job.start(n)
        for n in range(2, 4):
            assert await wf.wait_for(f"job-{n}", timeout=30) == n
        assert worker.returncode is None  # still serving
    finally:
        if worker.returncode is None:
            worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(worker.communicate(), 30)
    assert worker.returncode == 0, stderr.decode()
    assert sorted(int(line) for line in executed.read_text().split()) == [0, 1, 2, 3]  # each once
    after = {key: value for key, value in records(admin, store).items() if "job-10" in key}
    assert after == before
