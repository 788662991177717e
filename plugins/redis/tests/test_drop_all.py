"""``RedisStore.drop_all`` deletes its prefix's keys, all of them, and no other prefix's
(issue 16, item 14: prefix ``app`` deleted ``app:v2``'s runs, and ``<prefix>:alive`` stayed)."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from redis_test_kit import StoreMaker, lease_of, new_run, step

from durable.errors import LeaseLost
from durable.store import QueuedRun, QueueLimits, RunQuery, RunRecord, RunStatus
from durable_redis import RedisStore


async def filled(store: RedisStore, run_id: str) -> None:
    """A run of every kind of key: steps, deliveries, events and streams, indexes, an expiry
    schedule entry."""
    await store.open()
    run = new_run(run_id)
    await store.create_run(run)
    await store.save_step(lease_of(run), step(run_id, "a"))
    await store.send_signal(run_id, "go", "d", "1")
    await store.set_event(lease_of(run), "progress", "1")
    await store.append_stream(lease_of(run), "log", '"a"', write_id="w")
    await store.update_run(lease_of(run), RunStatus.COMPLETED, result="1", release=True)
    await store.create_run(new_run(run_id + "/durable:child@1", owner=None))
    await store.send_signal("not-yet", "go", "", "1")  # deliveries to a run not created yet
    # A queue's keys: members, running, starts, debounce, meta, delays, and the set of queue names.
    for queued in (run_id + "-q1", run_id + "-q2", run_id + "-q3"):
        now = time.time()
        later = now + 3600 if queued.endswith("3") else now  # a delayed run
        entry = QueuedRun(queued, "llm", debounce_key=queued, enqueued_at=now, not_before=later)
        await store.enqueue_run(RunRecord(queued, "wf", RunStatus.PENDING, "{}", "d", now, now), entry)
    await store.claim_queued("llm", time.time(), "o", 60.0, QueueLimits(rate_limit=(5, 7200.0)))


def contents(admin: redis.Redis, key: str) -> object:
    kind = admin.type(key)
    read = {
        "hash": admin.hgetall,
        "list": lambda k: admin.lrange(k, 0, -1),
        "string": admin.get,
        "set": lambda k: sorted(admin.smembers(k)),
    }
    if kind == "zset":
        return kind, admin.zrange(key, 0, -1, withscores=True)
    return kind, read[kind](key)


def keys_of(admin: redis.Redis, prefix: str) -> set[str]:
    return {key for key in admin.scan_iter(match=prefix + "*", count=1000) if key.startswith(prefix + ":")}


async def test_drop_all_deletes_every_key_of_its_prefix_and_none_of_a_prefix_that_starts_alike(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    app = make_store(ttl=3600)
    base = app.prefix
    # Prefixes whose keys start as app's do, some named like app's own keys.
    neighbours = [
        make_store(prefix=f"{base}:{suffix}", ttl=3600)
        for suffix in ("v2", "runs", "workflow", "status", "queue", "queues")
    ]
    for other in neighbours:
        await filled(other, "r")
    theirs = {key: contents(admin, key) for key in keys_of(admin, base)}  # all the neighbours' keys
    await filled(app, "r")
    ours = keys_of(admin, base) - set(theirs)
    assert f"{base}:alive" in ours and f"{base}:runs" in ours
    queue = app.keys.queue("llm")
    assert {*queue.all, app.keys.queues, *app.keys.output_keys("r")} <= ours

    assert await app.drop_all() == len(ours)

    assert {key: contents(admin, key) for key in keys_of(admin, base)} == theirs  # ours are gone, markers too
    for store in neighbours:
        listed = {run.run_id for run in await store.list_runs(RunQuery())}
        assert listed == {"r/durable:child@1", "r", "r-q1", "r-q2", "r-q3"}
        assert await store.list_queues() == ["llm"]


async def test_a_store_emptied_by_drop_all_works_on_and_reports_no_loss_of_data(
    make_store: StoreMaker, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store()
    await store.open()
    held = new_run("held")
    await store.create_run(held)
    await store.drop_all()
    caplog.set_level(logging.WARNING, logger="durable_redis")
    assert await store.get_run("held") is None
    with pytest.raises(LeaseLost):  # the run was deleted on purpose: not RedisDataLost
        await store.renew_lease(lease_of(held), 30)
    assert await store.due_runs(time.time()) == []
    assert not admin.exists(store.keys.alive)
    fresh = new_run("fresh", owner=None)
    assert await store.create_run(fresh) == (fresh, True)  # the markers come back with it
    assert admin.exists(store.keys.alive) and admin.exists(store.keys.layout)
    assert [run.run_id for run in await store.due_runs(time.time())] == ["fresh"]
    assert [r.message for r in caplog.records if "lost its data" in r.message] == []
    # A loss after that is noticed again.
    admin.delete(store.keys.alive)
    assert await store.due_runs(time.time()) != []
    assert [r.message for r in caplog.records if "lost its data" in r.message]
