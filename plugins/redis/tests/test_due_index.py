"""Due runs come from the index of live runs, so a poll costs the same however many runs finished.

Against a real server: the index agrees with ``durable._lifecycle.is_due`` in every state a run
can be in, is kept by the scripts that change a run, is built on opening data of the previous
release (which had none), and a poll, ``list_runs(limit=20)`` and ``create_run`` read no
finished run (counted on the wire, not timed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from secrets import token_hex

import redis
from redis_test_kit import (
    CountingConnection,
    RecordingConnection,
    StoreMaker,
    as_previous_release,
    counted,
    in_one_batch,
    lease_of,
    new_run,
    packet_mark,
    sent_since,
)

from durable._lifecycle import DUE_STATUSES, is_due
from durable.store import RunQuery, RunRecord, RunStatus
from durable_redis import RedisStore
from durable_redis._keys import LAYOUT

FINISHED = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


def made(run_id: str, created_at: float, owner: str | None = "owner-a", **fields: object) -> RunRecord:
    """A run created at ``created_at``, owned under token 1 (lease for a minute) or pending."""
    return dataclasses.replace(new_run(run_id, owner), created_at=created_at, updated_at=created_at, **fields)


async def every_state(store: RedisStore) -> None:
    """Runs in every state the lifecycle can leave one in, created a second apart (two at once)."""
    now = time.time()
    t = now - 1000
    for run in (
        made("pending-b", t + 5, owner=None),
        made("pending-a", t + 5, owner=None),
        made("live", t + 1),
        made("lease-expired", t + 2, lease_expires_at=now - 1),
    ):
        await store.create_run(run)

    async def owned(run_id: str, created_at: float) -> RunRecord:
        run = made(run_id, created_at)
        await store.create_run(run)
        return run

    await store.update_run(lease_of(await owned("released", t + 3)), RunStatus.RUNNING, release=True)
    await store.renew_lease(lease_of(await owned("given-back", t + 4)), 0)
    for run_id, created_at, wake_at in (
        ("parked-past", t + 6, now - 1),
        ("parked-future", t + 7, now + 3600),
        ("parked-forever", t + 8, None),
        ("parked-signalled", t + 9, None),
    ):
        lease = lease_of(await owned(run_id, created_at))
        await store.update_run(lease, RunStatus.WAITING, wake_at=wake_at, release=True)
    await store.send_signal("parked-signalled", "go", "", '"x"')
    await store.update_run(lease_of(await owned("waiting-in-process", t + 10)), RunStatus.WAITING)
    abandoned = lease_of(await owned("waiting-abandoned", t + 11))
    await store.update_run(abandoned, RunStatus.WAITING)
    await store.renew_lease(abandoned, 0)
    for i, status in enumerate(FINISHED):
        await store.update_run(lease_of(await owned(status.value, t + 12 + i)), status, release=True)
    await store.create_run(made("cancelled-pending", t + 15, owner=None))
    await store.request_cancel("cancelled-pending")
    claimed = lease_of(await owned("failed-then-claimed", t + 16))
    await store.update_run(claimed, RunStatus.FAILED, release=True)
    assert await store.claim_run("failed-then-claimed", "owner-b", 60) is not None
    reset = lease_of(await owned("failed-then-reset", t + 17))
    await store.update_run(reset, RunStatus.FAILED, release=True)
    await store.reset_run("failed-then-reset")
    await store.create_run(made("deleted", t + 18, owner=None))
    await store.delete_run("deleted")


async def expected_due(store: RedisStore, now: float) -> list[str]:
    """What ``is_due`` accepts among every stored run, oldest created first."""
    runs = await store.list_runs(RunQuery(limit=10_000))
    return [run.run_id for run in sorted(runs, key=lambda r: (r.created_at, r.run_id)) if is_due(run, now)]


def ids(runs: list[RunRecord]) -> list[str]:
    return [run.run_id for run in runs]


def run_key(store: RedisStore, run_id: str) -> bytes:
    return store.keys.run_keys(run_id)[0].encode()


# -- the index agrees with the lifecycle ------------------------------------------------------


async def test_due_runs_are_exactly_what_is_due_accepts_oldest_created_first(store: RedisStore) -> None:
    await every_state(store)
    now = time.time()
    due = ids(await store.due_runs(now))
    assert due == await expected_due(store, now)
    assert due == [
        "lease-expired",
        "released",
        "given-back",
        "pending-a",
        "pending-b",
        "parked-past",
        "parked-signalled",
        "waiting-abandoned",
        "failed-then-reset",
    ]
    assert ids(await store.due_runs(now, limit=3)) == due[:3]
    assert await store.due_runs(now, limit=0) == []
    # An hour on, the lease taken a minute ago has expired and the parked run has woken.
    later = now + 3601
    assert ids(await store.due_runs(later)) == await expected_due(store, later)
    assert {"live", "parked-future", "failed-then-claimed"} <= set(ids(await store.due_runs(later)))


async def test_the_index_lists_exactly_the_runs_that_may_become_due(
    store: RedisStore, admin: redis.Redis
) -> None:
    await every_state(store)
    runs = await store.list_runs(RunQuery(limit=10_000))
    entries = dict(admin.zrange(store.keys.live, 0, -1, withscores=True))
    assert set(entries) == {run.run_id for run in runs if run.status in DUE_STATUSES}
    assert entries["parked-forever"] == float("inf")  # due only once a signal arrives
    assert entries["pending-a"] == 0.0
    live = next(run for run in runs if run.run_id == "live")
    assert entries["live"] == live.lease_expires_at


async def test_a_signal_makes_a_parked_run_due_through_the_index(store: RedisStore) -> None:
    run = new_run("parked")
    await store.create_run(run)
    await store.update_run(lease_of(run), RunStatus.WAITING, release=True)
    assert await store.due_runs(time.time()) == []
    await store.send_signal("parked", "approval", "", "true")
    assert ids(await store.due_runs(time.time())) == ["parked"]


async def test_an_index_entry_that_disagrees_with_its_run_is_not_returned_and_is_repaired(
    store: RedisStore, admin: redis.Redis
) -> None:
    done = new_run("done")
    await store.create_run(done)
    await store.update_run(lease_of(done), RunStatus.COMPLETED, result="1", release=True)
    held = new_run("held")
    await store.create_run(held)
    # As a process that keeps no index (the previous release) would leave them.
    admin.zadd(store.keys.live, {"done": 0, "held": 0, "vanished": 0})
    assert await store.due_runs(time.time()) == []
    assert admin.zrange(store.keys.live, 0, -1, withscores=True) == [("held", held.lease_expires_at)]


async def test_listing_live_statuses_reads_the_index_and_matches_the_full_listing(store: RedisStore) -> None:
    await every_state(store)
    everything = await store.list_runs(RunQuery(limit=10_000))
    for statuses in (DUE_STATUSES, frozenset({RunStatus.WAITING}), frozenset({RunStatus.PENDING})):
        for query in (
            RunQuery(statuses=statuses),
            RunQuery(statuses=statuses, limit=2, offset=1),
            RunQuery(statuses=statuses, id_prefix="parked-"),
            RunQuery(statuses=statuses, created_after=everything[-1].created_at + 5),
        ):
            full = [run for run in everything if query.matches(run)]
            assert await store.list_runs(query) == full[query.offset : query.offset + query.limit], query


# -- data of the previous release -------------------------------------------------------------


async def test_opening_data_of_the_previous_release_builds_the_index_once(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    writer = make_store()
    await writer.open()
    await every_state(writer)
    now = time.time()
    expected = await expected_due(writer, now)
    await writer.close()
    as_previous_release(admin, writer)

    built_by = f"upgrade-{token_hex(4)}"
    upgraded = make_store(prefix=writer.prefix, client_name=built_by, connection_class=RecordingConnection)
    await upgraded.open()
    assert b"\r\nSCAN\r\n" in sent_since(built_by, 0)  # the keyspace, once
    assert admin.get(writer.keys.layout) == str(LAYOUT)
    assert ids(await upgraded.due_runs(now)) == expected
    assert {"completed", "failed", "cancelled"}.isdisjoint(admin.zrange(writer.keys.live, 0, -1))
    await upgraded.close()

    # Built once: the next store opened on it scans nothing, and needs no pooled connection.
    name = f"upgrade-{token_hex(4)}"
    again = make_store(prefix=writer.prefix, client_name=name, connection_class=RecordingConnection)
    await again.open()
    assert b"\r\nSCAN\r\n" not in sent_since(name, 0)
    assert CountingConnection.opened[name] == 1
    assert ids(await again.due_runs(now)) == expected


async def test_opening_an_empty_prefix_marks_the_layout_in_the_round_trip_that_loads_the_scripts(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store, name = counted(make_store, "fresh", connection_class=RecordingConnection)
    await store.open()
    assert admin.get(store.keys.layout) == str(LAYOUT)
    assert b"\r\nSCAN\r\n" not in sent_since(name, 0)
    assert CountingConnection.opened[name] == 1  # no pooled connection was needed


# -- a thousand finished runs -----------------------------------------------------------------


async def test_with_a_thousand_finished_runs_a_poll_reads_no_finished_run(make_store: StoreMaker) -> None:
    store, name = counted(make_store, "flat", connection_class=RecordingConnection)
    await store.open()
    t = time.time() - 10_000
    live = [made("pending", t, owner=None), made("held", t + 1), made("expired", t + 2, lease_expires_at=t)]
    for run in live:
        await store.create_run(run)
    parked = made("parked", t + 3)
    await store.create_run(parked)
    await store.update_run(lease_of(parked), RunStatus.WAITING, wake_at=time.time() + 3600, release=True)
    finished = [
        made(f"done-{i}", t + 10 + i, owner=None, status=FINISHED[i % 3], result="1") for i in range(1000)
    ]
    await in_one_batch(store, *(store.create_run(run) for run in finished))
    finished_keys = [run_key(store, run.run_id) for run in finished]

    mark = packet_mark(name)
    before = CountingConnection.sent[name]
    due = await store.due_runs(time.time())
    polled = sent_since(name, mark)
    assert ids(due) == ["pending", "expired"]
    assert [key for key in finished_keys if key in polled] == []
    assert polled.count(b"HGETALL") == 2  # the due runs' own records, nothing else
    assert CountingConnection.sent[name] - before == 2  # the index, then those records

    mark = packet_mark(name)
    newest = await store.list_runs(RunQuery(limit=20))
    assert ids(newest) == [f"done-{i}" for i in range(999, 979, -1)]
    assert sent_since(name, mark).count(b"HGETALL") == 20

    mark = packet_mark(name)
    running = await store.list_runs(RunQuery(statuses=frozenset({RunStatus.RUNNING})))
    assert ids(running) == ["expired", "held"]
    listed = sent_since(name, mark)
    assert [key for key in finished_keys if key in listed] == []

    mark = packet_mark(name)
    before = CountingConnection.sent[name]
    await store.create_run(made("new", time.time(), owner=None))
    created = sent_since(name, mark)
    assert CountingConnection.sent[name] - before == 1
    assert [key for key in finished_keys if key in created] == []


async def test_short_listings_read_short_pages_and_keep_runs_created_at_one_instant_in_id_order(
    store: RedisStore,
) -> None:
    t = time.time() - 100
    created = [(t + i // 3, f"r{i % 3}-{i}") for i in range(12)]  # four instants, three runs each
    for at, run_id in created:
        await store.create_run(made(run_id, at, owner=None))
    everything = [run_id for _, run_id in sorted(created, key=lambda c: (-c[0], c[1]))]
    assert ids(await store.list_runs(RunQuery())) == everything
    for limit in range(1, 6):
        for offset in range(12):
            listed = await store.list_runs(RunQuery(limit=limit, offset=offset))
            assert ids(listed) == everything[offset : offset + limit], (limit, offset)
    pending = frozenset({RunStatus.PENDING})
    assert ids(await store.list_runs(RunQuery(statuses=pending, limit=4, offset=2))) == everything[2:6]


# -- runs parked on a signal ------------------------------------------------------------------


async def test_an_idle_worker_among_a_thousand_parked_runs_reads_none_of_them(make_store: StoreMaker) -> None:
    # Issue 16, item 13: with 10,000 runs parked on a signal an idle worker used 88% of a core,
    # because every poll read every run. A parked run has no due time until a delivery gives it one.
    from durable import Workflow

    store, name = counted(make_store, "parked", connection_class=RecordingConnection)
    await store.open()
    t = time.time() - 1000
    runs = [made(f"parked-{i}", t + i) for i in range(1000)]
    await in_one_batch(store, *(store.create_run(run) for run in runs))
    await in_one_batch(
        store, *(store.update_run(lease_of(run), RunStatus.WAITING, release=True) for run in runs)
    )
    wf = Workflow("parked", db=store)

    @wf.workflow(name="wf")
    async def waits() -> None:
        await wf.signal("go")

    parked_keys = [run_key(store, run.run_id) for run in runs]
    mark, before = packet_mark(name), CountingConnection.sent[name]
    worker = wf.worker(poll_interval=0.05)
    stop = asyncio.Event()
    working = asyncio.ensure_future(worker.run(stop))
    await asyncio.sleep(1.0)  # about twenty polls
    stop.set()
    await working
    sent = sent_since(name, mark)
    polls = sent.count(b"\r\nEVALSHA\r\n")
    assert polls >= 5 and worker.resumed == 0
    assert b"HGETALL" not in sent and [key for key in parked_keys if key in sent] == []
    assert CountingConnection.sent[name] - before <= polls + 2  # a round trip a poll, nothing else

    # A delivery makes its run due, and only it is read.
    await store.send_signal("parked-7", "go", "", "1")
    mark = packet_mark(name)
    assert ids(await store.due_runs(time.time())) == ["parked-7"]
    assert sent_since(name, mark).count(b"HGETALL") == 1
