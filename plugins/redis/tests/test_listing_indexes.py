"""Listings through the indexes (``_listing``): the same runs as the reference semantics
(``RunQuery.matches``), and a page reads only the runs it lists, however many others there are
(issue 16, item 13: filtered listings, child lookup, keyset paging). Counted on the wire, not timed.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

import redis
from redis_test_kit import (
    CountingConnection,
    RecordingConnection,
    StoreMaker,
    counted,
    in_one_batch,
    lease_of,
    new_run,
    packet_mark,
    sent_since,
)

from durable.store import RunQuery, RunRecord, RunStatus
from durable_redis import RedisStore

T0 = 1_700_000_000.0
STATUSES = (
    RunStatus.PENDING,
    RunStatus.RUNNING,
    RunStatus.WAITING,
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
)


def ids(runs: list[RunRecord]) -> list[str]:
    return [run.run_id for run in runs]


def made(run_id: str, workflow: str, created_at: float) -> RunRecord:
    return replace(new_run(run_id), workflow=workflow, created_at=created_at, updated_at=created_at)


async def seeded(store: RedisStore, runs: list[tuple[str, str, float, RunStatus]]) -> list[RunRecord]:
    """Creates ``(run_id, workflow, created_at, status)`` runs (owned, then given their status)."""

    async def one(run_id: str, workflow: str, created_at: float, status: RunStatus) -> None:
        run = made(run_id, workflow, created_at)
        await store.create_run(run)
        if status is RunStatus.PENDING:
            await store.update_run(lease_of(run), RunStatus.PENDING, release=True)
        elif status is not RunStatus.RUNNING:
            await store.update_run(lease_of(run), status, result="1", release=True)

    for start in range(0, len(runs), 500):
        await in_one_batch(store, *(one(*run) for run in runs[start : start + 500]))
    return await store.list_runs(RunQuery(limit=len(runs) + 1))


def dataset(rng: random.Random) -> list[tuple[str, str, float, RunStatus]]:
    """Runs of three workflows in every status, with parents and children, and groups of runs
    created at one instant."""
    runs = []
    for i in range(180):
        at = T0 + i // 4  # four runs at each instant
        parent = f"p{i % 7}"
        run_id = parent if i < 7 else f"{parent}/durable:child@{i}" if i % 3 else f"{parent}-x{i}"
        runs.append((run_id, rng.choice(["alpha", "beta", "gamma"]), at, rng.choice(STATUSES)))
    return runs


def reference(everything: list[RunRecord], query: RunQuery) -> list[RunRecord]:
    found = [run for run in everything if query.matches(run)]
    return found[query.offset : query.offset + query.limit]


def random_query(rng: random.Random, everything: list[RunRecord]) -> RunQuery:
    statuses = None
    if rng.random() < 0.6:
        statuses = frozenset(rng.sample(STATUSES, rng.randint(1, 3)))
        if rng.random() < 0.1:
            statuses |= {RunStatus.INTERRUPTED}
    after = None
    if rng.random() < 0.4:
        pivot = rng.choice(everything)
        after = (pivot.created_at, pivot.run_id if rng.random() < 0.8 else pivot.run_id + "~")
    return RunQuery(
        statuses=statuses,
        workflow=rng.choice([None, None, "alpha", "beta", "nope"]),
        id_prefix=rng.choice([None, None, None, "p1", "p1/", "p3/durable:", "p2-", "zzz"]),
        created_after=rng.choice([None, None, T0 + 10, T0 + 20.5]),
        created_before=rng.choice([None, None, T0 + 30, T0 + 44]),
        limit=rng.choice([1, 3, 7, 20, 100, 1000]),
        offset=rng.choice([0, 0, 0, 2, 5]),
        after=after,
    )


async def test_every_listing_lists_what_the_reference_semantics_list(store: RedisStore) -> None:
    rng = random.Random(16)
    everything = await seeded(store, dataset(rng))
    assert len(everything) == 180
    for _ in range(300):
        query = random_query(rng, everything)
        assert await store.list_runs(query) == reference(everything, query), query


async def test_keyset_pages_walk_every_filtered_listing_exactly_once(store: RedisStore) -> None:
    rng = random.Random(14)
    everything = await seeded(store, dataset(rng))
    for statuses, workflow, prefix in (
        (None, None, None),
        (frozenset({RunStatus.FAILED, RunStatus.PENDING}), None, None),
        (None, "beta", None),
        (frozenset({RunStatus.COMPLETED}), "gamma", None),
        (None, None, "p4"),
    ):
        for size in (1, 3, 4, 5):
            query = RunQuery(statuses=statuses, workflow=workflow, id_prefix=prefix, limit=size)
            pages: list[str] = []
            after = None
            while True:
                page = await store.list_runs(replace(query, after=after))
                pages += ids(page)
                if len(page) < size:
                    break
                after = (page[-1].created_at, page[-1].run_id)
            assert pages == ids(reference(everything, replace(query, limit=10_000))), (query, size)


# -- a page reads only what it lists ----------------------------------------------------------


async def history(store: RedisStore, finished: int) -> None:
    """``finished`` completed runs of workflow "old", with no children, created before the rest."""
    runs = [(f"done-{i}", "old", T0 + i, RunStatus.COMPLETED) for i in range(finished)]
    await seeded(store, runs)


async def recent(store: RedisStore) -> None:
    """The runs the listings below look for: ten failed "new" runs, a parent and its children."""
    t = T0 + 100_000
    runs = [(f"failed-{i}", "new", t + i, RunStatus.FAILED) for i in range(10)]
    runs.append(("parent", "new", t + 20, RunStatus.WAITING))
    runs += [(f"parent/durable:child@{i}", "kid", t + 21 + i, RunStatus.COMPLETED) for i in range(3)]
    await seeded(store, runs)


async def cost(store: RedisStore, name: str, query: RunQuery) -> tuple[list[str], int, int, bytes]:
    """What ``list_runs(query)`` lists, its round trips, the runs it read, and what it sent."""
    mark, before = packet_mark(name), CountingConnection.sent[name]
    listed = ids(await store.list_runs(query))
    sent = sent_since(name, mark)
    return listed, CountingConnection.sent[name] - before, sent.count(b"HGETALL"), sent


QUERIES = {
    "failed": RunQuery(statuses=frozenset({RunStatus.FAILED}), limit=5),
    "failed or waiting": RunQuery(statuses=frozenset({RunStatus.FAILED, RunStatus.WAITING}), limit=20),
    "workflow": RunQuery(workflow="new", limit=20),
    "workflow and status": RunQuery(workflow="new", statuses=frozenset({RunStatus.FAILED}), limit=3),
    "children": RunQuery(id_prefix="parent/"),
    "a deep page": RunQuery(limit=5, after=(T0 + 500, "done-500")),
    "a deep page of one status": RunQuery(
        statuses=frozenset({RunStatus.COMPLETED}), limit=5, after=(T0 + 500, "done-500")
    ),
}


async def test_a_listing_page_costs_the_same_with_a_thousand_finished_runs_as_with_none(
    make_store: StoreMaker,
) -> None:
    costs = {}
    for finished in (0, 1000):
        store, name = counted(make_store, f"history-{finished}", connection_class=RecordingConnection)
        await store.open()
        await history(store, finished)
        await recent(store)
        finished_keys = [store.keys.run_keys(f"done-{i}")[0].encode() for i in range(finished)]
        costs[finished] = {}
        for what, query in QUERIES.items():
            listed, trips, reads, sent = await cost(store, name, query)
            costs[finished][what] = (listed, trips, reads)
            if what.startswith("a deep page"):
                assert listed == [f"done-{i}" for i in range(499, 494, -1)][: len(listed)], what
                assert reads == len(listed), what
            else:
                # Not one finished run of the history is read, or named at all.
                assert [key for key in finished_keys if key in sent] == [], what
                assert reads == len(listed), what
    for what in QUERIES:
        if what.startswith("a deep page"):
            assert costs[0][what][0] == [] and costs[1000][what][1] <= 2, costs[1000][what]
        else:
            assert costs[1000][what] == costs[0][what], what
    assert costs[1000]["failed"][0] == [f"failed-{i}" for i in range(9, 4, -1)]
    assert costs[1000]["children"][0] == [f"parent/durable:child@{i}" for i in range(2, -1, -1)]
    assert costs[1000]["workflow and status"][0] == ["failed-9", "failed-8", "failed-7"]
    assert costs[1000]["failed"][1] == 2  # the status index's entries, then the runs they name
    assert costs[1000]["children"][1] == 3  # counts and ids, then created_at, then the runs


# -- entries that disagree with their run -----------------------------------------------------


async def test_the_index_entries_of_an_expired_run_are_removed_by_a_poll(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store(ttl=0.2)
    await store.open()
    run = made("short/durable:child@1", "brief", time.time())
    await store.create_run(run)
    await store.update_run(lease_of(run), RunStatus.COMPLETED, result="1", release=True)
    keys = store.keys
    indexes = [keys.index, keys.status("completed"), keys.workflow("brief"), keys.ids]
    assert all(admin.zscore(key, run.run_id) is not None for key in indexes)
    assert admin.zcard(keys.expiring) == 1
    deadline = time.monotonic() + 5
    while admin.exists(keys.run_keys(run.run_id)[0]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert await store.due_runs(time.time()) == []  # the poll reads the schedule
    assert [admin.zscore(key, run.run_id) for key in indexes] == [None] * 4
    assert admin.zcard(keys.expiring) == 0


async def test_a_run_that_becomes_live_again_leaves_the_expiry_schedule(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store(ttl=3600)
    await store.open()
    run = made("again", "wf", time.time())
    await store.create_run(run)
    lease = lease_of(run)
    await store.update_run(lease, RunStatus.CANCELLED, release=True)
    assert admin.zcard(store.keys.expiring) == 1
    assert await store.reset_run("again") is not None
    assert admin.zcard(store.keys.expiring) == 0 and admin.ttl(store.keys.run_keys("again")[0]) == -1
    await store.delete_run("again")
    assert all(admin.zscore(key, "again") is None for key in (store.keys.index, store.keys.workflow("wf")))


async def test_a_hand_edited_status_is_listed_by_its_new_status_once_a_listing_saw_it(
    store: RedisStore, admin: redis.Redis
) -> None:
    run = made("edited", "wf", T0)
    await store.create_run(run)
    await store.update_run(lease_of(run), RunStatus.COMPLETED, result="1", release=True)
    admin.hset(store.keys.run_keys("edited")[0], "status", "failed")  # as an operator would
    failed = frozenset({RunStatus.FAILED})
    assert await store.list_runs(RunQuery(statuses=failed)) == []  # the failed index never saw it
    assert await store.list_runs(RunQuery(statuses=frozenset({RunStatus.COMPLETED}))) == []  # repaired
    assert ids(await store.list_runs(RunQuery(statuses=failed))) == ["edited"]
    assert admin.zscore(store.keys.status("completed"), "edited") is None
