"""``RunRecord.version`` and ``context``, ``StepRecord.version`` and ``RunQuery.version`` on Redis
(issues 19 and 20): fields of the run hash and a last element of a step's value, absent when
``None``, so records written before read as ``None`` and a step without a version is stored as it
always was."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import redis
from redis_test_kit import lease_of, new_run, step

from durable.store import QueuedRun, QueueLimits, RunQuery, RunStatus
from durable_redis import RedisStore
from durable_redis import _keys as k

CONTEXT = json.dumps({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})


async def test_version_and_context_are_stored_and_come_back_from_every_read(
    store: RedisStore, admin: redis.Redis
) -> None:
    run = replace(new_run("v", owner=None), version="v1", context=CONTEXT)
    assert (await store.create_run(run))[1]
    key = store.keys.run_keys("v")[0]
    assert admin.hmget(key, "version", "context") == ["v1", CONTEXT]
    assert await store.get_run("v") == run
    assert [found.version for found in await store.due_runs(time.time())] == ["v1"]
    lease = await store.claim_run("v", "o", 60.0)
    assert lease is not None
    claimed = await store.get_run("v")
    assert claimed is not None and (claimed.version, claimed.context) == ("v1", CONTEXT)
    await store.update_run(lease, RunStatus.FAILED, error=None, release=True)
    reset = await store.reset_run("v")
    assert reset is not None and (reset.version, reset.context) == ("v1", CONTEXT)

    queued = replace(new_run("q", owner=None), version="v2", context=CONTEXT)
    entry = QueuedRun("q", "llm", enqueued_at=queued.created_at)
    stored, _ = await store.enqueue_run(queued, entry)
    assert (stored.version, stored.context) == ("v2", CONTEXT)
    [(taken, _)] = await store.claim_queued("llm", time.time(), "o", 60.0, QueueLimits())
    assert (taken.version, taken.context) == ("v2", CONTEXT)


async def test_list_runs_filters_by_version(store: RedisStore) -> None:
    for run_id, version in (("a", "v1"), ("b", "v2"), ("c", None), ("d", "v1")):
        await store.create_run(replace(new_run(run_id, owner=None), version=version))
    assert sorted(run.run_id for run in await store.list_runs(RunQuery(version="v1"))) == ["a", "d"]
    assert [run.run_id for run in await store.list_runs(RunQuery(version="v2", limit=5))] == ["b"]
    assert await store.list_runs(RunQuery(version="v3")) == []
    assert len(await store.list_runs(RunQuery())) == 4
    pending = RunQuery(version="v1", statuses=frozenset({RunStatus.PENDING}), workflow="wf", limit=1)
    assert len(await store.list_runs(pending)) == 1


async def test_a_run_written_before_the_fields_reads_both_as_none(
    store: RedisStore, admin: redis.Redis
) -> None:
    run = new_run("old", owner=None)
    await store.create_run(replace(run, version="v1", context=CONTEXT))
    admin.hdel(store.keys.run_keys("old")[0], "version", "context")  # as layout 3 wrote it
    assert await store.get_run("old") == run


async def test_a_steps_version_is_stored_last_and_a_step_without_one_as_before(
    store: RedisStore, admin: redis.Redis
) -> None:
    run = new_run("s")
    await store.create_run(run)
    versioned = replace(step("s", "a"), version="v7")
    plain = step("s", "b")
    await store.save_steps(lease_of(run), [versioned, plain])
    assert {s.key: s.version for s in await store.load_steps("s")} == {"a": "v7", "b": None}
    values = admin.hgetall(store.keys.run_keys("s")[1])
    assert json.loads(values["a"][1:])[-1] == "v7"
    assert len(json.loads(values["b"][1:])) == 7, "a step without a version is written as before"
    assert k.decode_step("s", "b", values["b"]) == plain
