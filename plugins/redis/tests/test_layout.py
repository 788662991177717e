"""The key layout of this release, and opening keys the previous release wrote (``_layout``).

A run's deliveries live in one key whose name says "sig" (python-durable 0.2's
``test_redis_signal_ttl`` counts them); the dedupe hash is ``:delivered`` (it was ``:sigids``).
Keys of the previous release (``redis_test_kit.as_previous_release``: no layout version, no
status, workflow or id index, ``:sigids``) are migrated when a store opens them: every run is
listed by every index, and a run parked under the old layout receives its signal afterwards.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
import redis
from redis_test_kit import StoreMaker, as_previous_release, lease_of, new_run

from durable import Workflow
from durable.errors import ConfigurationError
from durable.store import RunQuery, RunStatus
from durable_redis import RedisStore
from durable_redis._keys import LAYOUT


def sig_keys(admin: redis.Redis, store: RedisStore) -> list[str]:
    return sorted(key for key in admin.scan_iter(match=store.keys.pattern, count=1000) if "sig" in key)


async def test_a_runs_deliveries_are_one_key_named_sig_with_the_ttl(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    # What python-durable 0.2.3's test_redis_signal_ttl checks (on fakeredis there).
    store = make_store(ttl=120)
    await store.open()
    assert await store.send_signal("ttl-test", "approval", "", '{"data": 1}')
    [key] = sig_keys(admin, store)
    assert key == store.keys.run_keys("ttl-test")[2]
    assert 0 < admin.ttl(key) <= 120
    assert 0 < admin.ttl(store.keys.run_keys("ttl-test")[3]) <= 120  # the dedupe hash counts down too


async def test_a_run_parked_under_the_previous_layout_receives_its_signal_after_the_upgrade(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    before = make_store(ttl=0)
    wf = Workflow("upgrade", db=before)

    @wf.workflow(id="parked-{n}")
    async def waits(n: int) -> str:
        first = await wf.signal("first")
        second = await wf.signal("second")
        return f"{n}:{first}+{second}"

    await before.open()
    await waits.start(1)
    assert await wf.complete("parked-1", "first", "a", delivery_id="hook-1")
    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.worker(poll_interval=0.05).run(stop))
    deadline = time.monotonic() + 10
    while True:  # the run takes the first delivery, then parks on the second
        run = await before.get_run("parked-1")
        assert run is not None
        steps = await before.load_steps("parked-1")
        if run.status is RunStatus.WAITING and run.owner is None and len(steps) == 1:
            break
        assert time.monotonic() < deadline, run
        await asyncio.sleep(0.05)
    stop.set()
    await worker
    await wf.close()
    as_previous_release(admin, before)
    legacy = before.keys.legacy_delivered("parked-1")
    delivered = before.keys.run_keys("parked-1")[3]
    assert admin.exists(legacy) and not admin.exists(delivered)

    after = make_store(prefix=before.prefix, ttl=0)
    upgraded = Workflow("upgrade", db=after)
    upgraded.workflow(id="parked-{n}")(waits.fn)
    await after.open()
    assert admin.get(after.keys.layout) == str(LAYOUT)
    assert not admin.exists(legacy) and admin.hget(delivered, "seq") == "1"
    assert admin.ttl(delivered) == -1
    assert not admin.exists(f"{after.prefix}:live:built")
    waiting = await after.list_runs(RunQuery(statuses=frozenset({RunStatus.WAITING})))
    assert [run.run_id for run in waiting] == ["parked-1"]
    assert [run.run_id for run in await after.list_runs(RunQuery(workflow="waits"))] == ["parked-1"]

    # The delivery recorded before the upgrade is still recorded once; the new one wakes the run.
    assert await upgraded.complete("parked-1", "first", "again", delivery_id="hook-1") is False
    assert await upgraded.complete("parked-1", "second", "b", delivery_id="hook-2") is True
    stop = asyncio.Event()
    worker = asyncio.ensure_future(upgraded.worker(poll_interval=0.05).run(stop))
    try:
        assert await upgraded.wait_for("parked-1", timeout=10) == "1:a+b"
    finally:
        stop.set()
        await worker
    assert [s.seq for s in await after.list_signals("parked-1")] == [1, 2]
    await upgraded.close()


async def test_a_dedupe_hash_written_under_both_names_is_merged(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    # A process of the previous release that recorded a delivery after another had migrated.
    store = make_store()
    await store.open()
    await store.create_run(new_run("both", owner=None))
    assert await store.send_signal("both", "go", "d1", "1")
    assert await store.send_signal("both", "go", "d2", "2")
    await store.close()
    as_previous_release(admin, store)
    keys = store.keys
    legacy, delivered = keys.legacy_delivered("both"), keys.run_keys("both")[3]
    admin.hset(delivered, mapping={"seq": "1", "2:god2": "1 other"})  # the new name, written meanwhile
    reopened = make_store(prefix=store.prefix)
    await reopened.open()
    assert not admin.exists(legacy)
    fields = admin.hgetall(delivered)
    assert fields["seq"] == "2" and set(fields) == {"seq", "2:god1", "2:god2"}
    assert fields["2:god2"] == "1 other"  # what the new name held stays
    assert await reopened.send_signal("both", "go", "d1", "again") is False
    assert await reopened.send_signal("both", "go", "d3", "3") is True


async def test_every_run_of_the_previous_layout_is_listed_by_every_index(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store()
    await store.open()
    t = time.time() - 100
    plan = [
        ("a", "alpha", RunStatus.COMPLETED),
        ("b", "beta", RunStatus.FAILED),
        ("a/durable:child@x", "beta", None),
    ]
    for i, (run_id, workflow, status) in enumerate(plan):
        run = replace(new_run(run_id), workflow=workflow, created_at=t + i, updated_at=t + i)
        await store.create_run(run)
        if status is not None:
            await store.update_run(lease_of(run), status, release=True)
    everything = await store.list_runs(RunQuery())
    await store.close()
    as_previous_release(admin, store)
    assert not admin.exists(store.keys.status("failed"), store.keys.workflow("beta"), store.keys.ids)

    reopened = make_store(prefix=store.prefix)
    await reopened.open()
    assert await reopened.list_runs(RunQuery()) == everything

    def listed(**filters: object) -> list[str]:
        return [run.run_id for run in everything if RunQuery(**filters).matches(run)]  # type: ignore[arg-type]

    for filters in (
        {"statuses": frozenset({RunStatus.FAILED})},
        {"statuses": frozenset({RunStatus.RUNNING, RunStatus.COMPLETED})},
        {"workflow": "beta"},
        {"id_prefix": "a/"},
        {"id_prefix": "a", "workflow": "alpha"},
    ):
        found = await reopened.list_runs(RunQuery(**filters))  # type: ignore[arg-type]
        assert [run.run_id for run in found] == listed(**filters), filters


async def test_keys_of_a_newer_layout_are_refused(make_store: StoreMaker, admin: redis.Redis) -> None:
    store = make_store()
    await store.open()
    await store.close()
    admin.set(store.keys.layout, str(LAYOUT + 1))
    newer = make_store(prefix=store.prefix)
    with pytest.raises(ConfigurationError, match="newer layout"):
        await newer.open()


@pytest.mark.parametrize("layout", ["2", "3"])
async def test_keys_of_layouts_2_and_3_are_marked_4_without_a_migration(
    make_store: StoreMaker, admin: redis.Redis, layout: str
) -> None:
    # Layout 2 holds no queued run, neither holds events or streams: opening them must not scan
    # the keyspace to re-index every run.
    before = make_store(ttl=0)
    await before.open()
    await before.create_run(new_run("kept", owner=None))
    assert admin.zscore(before.keys.status(RunStatus.PENDING), "kept") is not None
    await before.close()
    admin.set(before.keys.layout, layout)
    admin.zrem(before.keys.status(RunStatus.PENDING), "kept")  # a migration would put it back
    after = make_store(prefix=before.prefix, ttl=0)
    await after.open()
    try:
        assert admin.get(after.keys.layout) == str(LAYOUT) == "4"
        assert admin.zscore(after.keys.status(RunStatus.PENDING), "kept") is None
        assert (await after.get_run("kept")) is not None
    finally:
        await after.close()
