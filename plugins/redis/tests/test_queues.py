"""Queues on Redis beyond the contract (issue 17): what the keys hold, the round trips a claim
costs, a direct claim taking a slot, wake-ups from another store object over pub/sub, and an idle
worker woken when a delayed run's time comes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from redis_test_kit import (
    CountingConnection,
    RecordingConnection,
    StoreMaker,
    counted,
    packet_mark,
    sent_since,
)

from durable import Workflow
from durable.store import QueuedRun, QueueLimits, RunRecord, RunStatus
from durable_redis import RedisStore

Q = "llm"


def pending(run_id: str, created_at: float | None = None) -> RunRecord:
    now = time.time() if created_at is None else created_at
    return RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", now, now)


async def enqueue(store: RedisStore, run_id: str, **fields: object) -> None:
    run = pending(run_id, time.time() - 100 + len(run_id))
    await store.enqueue_run(run, QueuedRun(run_id, Q, enqueued_at=run.created_at, **fields))  # type: ignore[arg-type]


async def test_deleting_a_queued_run_removes_it_from_its_queues_keys(
    store: RedisStore, admin: redis.Redis
) -> None:
    keys = store.keys.queue(Q)
    await enqueue(store, "held", debounce_key="doc")
    await enqueue(store, "other")
    [(run, _)] = await store.claim_queued(Q, time.time(), "o", 60.0, QueueLimits(), limit=1)
    assert run.run_id == "held"
    await enqueue(store, "again", debounce_key="doc2")
    assert admin.zcard(keys.members) == 3 and admin.zrange(keys.running, 0, -1) == ["held"]
    assert admin.hgetall(keys.debounce) == {"doc2": "again"}
    for run_id in ("held", "again"):
        assert await store.delete_run(run_id)
    assert [m.split(":", 1)[1] for m in admin.zrange(keys.members, 0, -1)] == ["other"]
    assert admin.zcard(keys.running) == 0 and admin.hlen(keys.debounce) == 0
    assert await store.list_queues() == [Q]
    assert await store.delete_run("other")
    assert await store.list_queues() == []


async def test_a_queued_run_is_never_read_by_a_poll(make_store: StoreMaker, admin: redis.Redis) -> None:
    store, name = counted(make_store, "poll", connection_class=RecordingConnection)
    await store.open()
    for n in range(50):
        await enqueue(store, f"q-{n}")
    assert admin.zcard(store.keys.live) == 0
    mark = packet_mark(name)
    assert await store.due_runs(time.time() + 1) == []
    assert b"HGETALL" not in sent_since(name, mark)


async def test_a_claim_with_every_limit_is_one_round_trip(make_store: StoreMaker) -> None:
    store, name = counted(make_store, "claim")
    await store.open()
    for n in range(6):
        await enqueue(store, f"r-{n}", partition_key=f"t{n % 2}")
    limits = QueueLimits(concurrency=3, partition_concurrency=1, rate_limit=(10, 60.0))
    before = CountingConnection.sent[name]
    claimed = await store.claim_queued(Q, time.time(), "o", 60.0, limits, limit=5)
    assert CountingConnection.sent[name] - before == 1
    assert [run.run_id for run, _ in claimed] == ["r-0", "r-1"]  # one per partition


async def test_a_direct_claim_of_a_queued_run_holds_one_of_its_queues_slots(store: RedisStore) -> None:
    await enqueue(store, "a")
    await enqueue(store, "b")
    limits = QueueLimits(concurrency=1)
    lease = await store.claim_run("b", "direct", 60.0)
    assert lease is not None
    assert await store.claim_queued(Q, time.time(), "o", 60.0, limits) == []
    await store.update_run(lease, RunStatus.COMPLETED, result="1", release=True)
    assert [run.run_id for run, _ in await store.claim_queued(Q, time.time(), "o", 60.0, limits)] == ["a"]


async def test_another_store_objects_enqueue_and_freed_slot_wake_a_waiting_claimer(
    make_store: StoreMaker,
) -> None:
    waiter = make_store()
    other = make_store(prefix=waiter.prefix)
    await waiter.open()
    await other.open()

    async def woken_after(change: object) -> float:
        waiting = asyncio.ensure_future(waiter.wait_for_queues([Q], 30.0))
        await asyncio.sleep(0.3)  # subscribed and waiting
        began = time.monotonic()
        await change  # type: ignore[misc]
        await asyncio.wait_for(waiting, 5.0)
        return time.monotonic() - began

    assert await woken_after(enqueue(other, "r")) < 1.0
    [(_, lease)] = await other.claim_queued(Q, time.time(), "o", 60.0, QueueLimits())
    assert await woken_after(other.update_run(lease, RunStatus.COMPLETED, result="1", release=True)) < 1.0
    waiting = asyncio.ensure_future(waiter.wait_for_queues(["elsewhere"], 0.5))
    await asyncio.sleep(0.1)
    await enqueue(other, "s")
    await asyncio.sleep(0.2)
    assert not waiting.done(), "an enqueue on another queue woke the waiter"
    await waiting


async def test_an_idle_worker_starts_a_delayed_run_when_its_not_before_passes(make_store: StoreMaker) -> None:
    # Issue 17: the worker polls every 30 s; the delayed run must start at its not_before, not then.
    wf = Workflow("shop", db=make_store())
    wf.queue(Q)
    started: list[float] = []

    @wf.workflow(id="late-{n}", queue=Q)
    async def late(n: int) -> int:
        started.append(time.time())
        return n

    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.run_worker(stop=stop, poll_interval=30.0))
    try:
        await asyncio.sleep(0.3)  # idle: its first poll found nothing and it waits
        await late.options(delay=0.5).start(n=1)
        entry = await wf.get_queued("late-1")
        assert entry is not None and entry.not_before - entry.enqueued_at == pytest.approx(0.5)
        assert await wf.wait_for("late-1", timeout=10) == 1
    finally:
        stop.set()
        await worker
        await wf.close()
    assert len(started) == 1 and started[0] >= entry.not_before, "started before its not_before"
    assert started[0] - entry.not_before < 5.0, "started by the next 30 s poll, not at its not_before"


async def test_a_delayed_run_a_full_queue_holds_back_does_not_make_the_worker_spin(
    make_store: StoreMaker,
) -> None:
    store = make_store()
    wf = Workflow("shop", db=store)
    wf.queue(Q, concurrency=1)
    release = asyncio.Event()

    @wf.workflow(id="busy-{n}", queue=Q)
    async def busy(n: int) -> int:
        if n == 0:
            await release.wait()  # holds the queue's one slot
        return n

    claims = 0
    claim = store.claim_queued

    async def counted_claim(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return await claim(*args, **kwargs)

    store.claim_queued = counted_claim  # type: ignore[method-assign]
    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.run_worker(stop=stop, poll_interval=30.0))
    try:
        await busy.start(n=0)
        await busy.options(delay=0.2).start(n=1)
        await asyncio.sleep(1.5)  # the delayed run is due, but the slot is held
        held_back = claims
        assert (await wf.get_run("busy-1")).status is RunStatus.PENDING  # type: ignore[union-attr]
        release.set()
        assert await wf.wait_for("busy-1", timeout=10) == 1
    finally:
        release.set()
        stop.set()
        await worker
        await wf.close()
    assert held_back <= 10, f"{held_back} claims in 1.5 s: the worker spun on a run it could not claim"


async def test_a_queues_delays_hold_its_delayed_runs_until_their_first_claim(
    store: RedisStore, admin: redis.Redis
) -> None:
    delays = store.keys.queue(Q).delays
    now = time.time()

    def scored() -> dict[str, float]:
        return dict(admin.zrange(delays, 0, -1, withscores=True))

    await enqueue(store, "now")
    await enqueue(store, "soon", not_before=now + 0.3)
    await enqueue(store, "later", not_before=now + 3600)
    await enqueue(store, "gone", not_before=now + 60)
    await enqueue(store, "debounced", debounce_key="doc", not_before=now + 30)
    assert set(scored()) == {"soon", "later", "gone", "debounced"}, "a run due at once has no entry"
    assert await store._next_not_before([Q]) == pytest.approx(now + 0.3)
    run = pending("debounced-again")
    entry = QueuedRun("x", Q, debounce_key="doc", enqueued_at=now, not_before=now + 40)
    assert (await store.enqueue_run(run, entry))[0].run_id == "debounced"
    assert scored()["debounced"] == pytest.approx(now + 40), "a debounce moves its run's time"
    assert await store.delete_run("gone")
    await asyncio.sleep(0.4)
    claimed = await store.claim_queued(Q, time.time(), "o", 60.0, QueueLimits(), limit=5)
    assert sorted(r.run_id for r, _ in claimed) == ["now", "soon"]
    assert set(scored()) == {"later", "debounced"}
    await store.request_cancel("later")
    assert set(scored()) == {"debounced"}, "a final run has none"


async def test_a_delays_key_that_cannot_be_read_leaves_the_wait_to_its_timeout(
    store: RedisStore, admin: redis.Redis
) -> None:
    await store.wait_for_queues([Q], 0.1)  # subscribed (its coming up wakes the first wait)
    admin.set(store.keys.queue(Q).delays, "not a sorted set")  # a raise would end every wait at once
    waiting = asyncio.ensure_future(store.wait_for_queues([Q], 30.0))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await enqueue(store, "r")
    await asyncio.wait_for(waiting, 5.0)  # still woken by an enqueue
