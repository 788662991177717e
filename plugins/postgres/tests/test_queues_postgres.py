"""Queues on Postgres (schema 4, ``_queue_sql``): what the contract suite cannot see.

A claim is one statement whatever its limits; its reads do not grow with the queue's finished
history; queued runs never enter ``runs_live``; ``queue_open`` follows every kind of write; the
NOTIFY payload computed in SQL is ``queue_key``'s; other store objects' enqueues, freed slots and
unqueued starts wake ``wait_for_queues``, and one sent between a claim and the wait is not lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import pytest
from postgres_test_kit import pending, recording

from durable.store import DEFAULT_QUEUE, QueuedRun, QueueLimits, RunRecord, RunStatus
from durable_postgres import PostgresStore
from durable_postgres._queue_sql import key_sql, queue_key

pytestmark = pytest.mark.asyncio

WOKEN_WITHIN = 5.0
"""A wait with a 60 s timeout that returns sooner than this was woken, not timed out."""


async def enqueue(
    store: PostgresStore, run_id: str, queue: str = "q", created_at: float | None = None, **fields: Any
) -> RunRecord:
    run = pending(run_id)
    if created_at is not None:
        run = replace(run, created_at=created_at, updated_at=created_at)
    fields.setdefault("enqueued_at", run.created_at)
    fields.setdefault("not_before", run.created_at)
    stored, _ = await store.enqueue_run(run, QueuedRun(run_id, queue, **fields))
    return stored


async def rows(store: PostgresStore, sql: str, *args: Any) -> list[Any]:
    return list(await store._call("test query", lambda conn: conn.fetch(sql, *args)))


async def test_a_claim_is_one_statement_with_or_without_limits(fresh: PostgresStore) -> None:
    for n in range(4):
        await enqueue(fresh, f"run-{n}", partition_key=f"t{n % 2}")
    limits = QueueLimits(concurrency=3, partition_concurrency=1, rate_limit=(10, 60.0))
    for given in (QueueLimits(), limits):
        with recording(fresh) as pool:
            assert len(await fresh.claim_queued("q", time.time(), "me", 30.0, given)) == 1
        assert len(pool.statements) == 1 and pool.acquires == 1, pool.statements
    with recording(fresh) as pool:
        await enqueue(fresh, "debounced", debounce_key="k", not_before=time.time() + 60)
        await enqueue(fresh, "debounced-2", debounce_key="k", not_before=time.time() + 60)
    assert len(pool.statements) == 2, "an enqueue, debounced or not, is one statement"


async def claim_buffers(store: PostgresStore, limits: QueueLimits, limit: int = 1) -> int:
    """Shared buffers a claim of queue ``q`` reads (all its nested statements), rolled back."""
    sql = (
        f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM {store._quoted}.queue_claim('q', $1, "
        "'me', 30, $2, $3, $4, $5, $6, NULL, 'x', 'lock')"
    )
    rate, window = limits.rate_limit or (None, None)
    conn = await store._connect()
    try:
        # Twice: a session's first call plans the function's statements (catalog reads).
        for _ in range(2):
            transaction = conn.transaction()
            await transaction.start()
            text = await conn.fetchval(
                sql, time.time(), limits.concurrency, limits.partition_concurrency, rate, window, limit
            )
            await transaction.rollback()  # the runs stay claimable
            plan = json.loads(text)[0]["Plan"]
            assert plan["Actual Rows"] >= 1, "the claim took nothing"
    finally:
        await conn.close()
    return int(plan["Shared Hit Blocks"]) + int(plan["Shared Read Blocks"])


@pytest.mark.parametrize(
    "limits",
    [QueueLimits(), QueueLimits(concurrency=5, partition_concurrency=2, rate_limit=(100, 60.0))],
    ids=["no-limits", "limits"],
)
async def test_a_claim_reads_the_same_however_long_the_queues_history(
    fresh: PostgresStore, limits: QueueLimits
) -> None:
    for n in range(3):  # the queue's live part: three pending runs, each claim takes the first
        await enqueue(fresh, f"live-{n}", partition_key="t")
    s = fresh._quoted

    # Finished queued runs, as the store leaves them (completed, started, their entries unlisted),
    # numbered first..last; then a backlog of pending runs queued behind the live ones.
    async def history(first: int, last: int, backlog: int = 0) -> None:
        async def fill(conn: Any) -> None:
            await conn.execute(
                f"INSERT INTO {s}.runs (run_id, workflow, status, inputs, inputs_digest, created_at, "
                "updated_at, lease_token) SELECT 'old-' || n, 'wf', 'completed', '{}', 'd', n, n, 1 "
                f"FROM generate_series({first}, {last}) AS n"
            )
            await conn.execute(
                f"INSERT INTO {s}.queue_entries (run_id, queue, priority, partition_key, not_before, "
                "enqueued_at, started_at, listed) SELECT 'old-' || n, 'q', 0, 't', n, n, n, FALSE "
                f"FROM generate_series({first}, {last}) AS n"
            )
            await conn.execute(f"ANALYZE {s}.queue_entries")
            await conn.execute(f"ANALYZE {s}.runs")

        await fresh._call("fill the history", fill)
        later = time.time() + 10
        for n in range(backlog):
            await enqueue(fresh, f"backlog-{n}", partition_key="t", enqueued_at=later + n)

    await history(1, 5_000)
    before = await claim_buffers(fresh, limits)
    await history(5_001, 50_000)
    longer = await claim_buffers(fresh, limits)
    # B-tree depth: a level more in some of the dozen indexes a claim probes or writes; never a
    # scan of the history (45,000 more entries are hundreds of pages).
    assert longer <= before + 25, (
        f"a claim read {before} buffers with 5,000 finished runs, {longer} with 50,000"
    )
    await history(50_001, 50_000, backlog=2_000)
    behind = await claim_buffers(fresh, limits)
    assert behind <= longer + 8, f"2,000 runs queued behind the next made a claim read {behind - longer} more"


async def test_queued_runs_stay_out_of_runs_live(fresh: PostgresStore) -> None:
    for n in range(5):
        await enqueue(fresh, f"run-{n}")
    await fresh.create_run(pending("plain"))
    ((_, lease),) = await fresh.claim_queued("q", time.time(), "me", 30.0, QueueLimits())
    await fresh.update_run(lease, RunStatus.WAITING, wake_at=time.time() - 1, release=True)  # woken
    listed = [row[0] for row in await rows(fresh, f"SELECT run_id FROM {fresh._quoted}.runs_live")]
    assert listed == ["plain"], "runs_live lists queued runs: a poll would step over every one"
    assert [run.run_id for run in await fresh.due_runs(time.time() + 1)] == ["plain"]


async def open_rows(store: PostgresStore) -> dict[str, bool]:
    found = await rows(store, f"SELECT run_id, held FROM {store._quoted}.queue_open")
    return {row[0]: row[1] for row in found}


async def test_queue_open_follows_every_kind_of_write(fresh: PostgresStore) -> None:
    now = time.time()
    names = ["a-done", "b-parked", "c-failed", "d-given-back", "e-direct", "f-gone"]
    for name in names:
        await enqueue(fresh, name, created_at=now)
    assert await open_rows(fresh) == dict.fromkeys(names, False)
    claimed = await fresh.claim_queued("q", now + 1, "me", 30.0, QueueLimits(), limit=4)
    done, parked, failed, given_back = (lease for _, lease in claimed)
    assert await fresh.claim_run("e-direct", "other", 30.0) is not None  # outside the limits, counted
    assert await open_rows(fresh) == {**dict.fromkeys(names[:5], True), "f-gone": False}
    await fresh.update_run(done, RunStatus.COMPLETED, result='"ok"', release=True)
    await fresh.update_run(parked, RunStatus.WAITING, release=True)  # parked on a signal
    await fresh.update_run(failed, RunStatus.FAILED, error="{}", release=True)
    await fresh.renew_lease(given_back, 0)  # held until a release; its lease counts no more
    assert await open_rows(fresh) == {
        "b-parked": False,
        "d-given-back": True,
        "e-direct": True,
        "f-gone": False,
    }
    assert (await fresh.reset_run("c-failed")) is not None  # failed -> pending: claimable again
    assert (await open_rows(fresh))["c-failed"] is False
    assert (await fresh.request_cancel("f-gone")).status is RunStatus.CANCELLED  # type: ignore[union-attr]
    assert "f-gone" not in await open_rows(fresh) and await fresh.get_queued("f-gone") is not None
    assert await fresh.delete_run("f-gone") and await fresh.get_queued("f-gone") is None
    assert await fresh.list_queues() == ["q"]
    stats = await fresh.queue_stats("q", time.time() + 1)
    assert (stats.running, stats.queued) == (1, 2), "e-direct runs; c-failed (reset), d-given-back wait"


@pytest.mark.parametrize("name", ["q", "llm", "é-ü", "x" * 500, DEFAULT_QUEUE])
async def test_the_notify_key_in_sql_is_queue_key(fresh: PostgresStore, name: str) -> None:
    (row,) = await rows(fresh, f"SELECT {key_sql('$1::text')}", name)
    assert row[0] == queue_key(name)


async def waited(store: PostgresStore, queues: list[str], during: Any = None) -> float:
    """Seconds ``store.wait_for_queues(queues, 60)`` took while ``during`` (awaitable) ran."""
    began = time.monotonic()
    waiting = asyncio.ensure_future(store.wait_for_queues(queues, 60.0))
    await asyncio.sleep(0.2)  # listening and waiting
    if during is not None:
        await during
    await asyncio.wait_for(waiting, 60.0)
    return time.monotonic() - began


async def test_other_store_objects_wake_a_waiting_claimer(fresh: PostgresStore, pg_url: str) -> None:
    other = PostgresStore(pg_url, schema=fresh.schema)
    await other.open()
    try:
        assert await fresh.claim_queued("q", time.time(), "me", 30.0, QueueLimits()) == []
        assert await waited(fresh, ["q"], enqueue(other, "run-1")) < WOKEN_WITHIN, "an enqueue"
        ((_, lease),) = await other.claim_queued("q", time.time(), "other", 30.0, QueueLimits())
        finished = other.update_run(lease, RunStatus.COMPLETED, result='"ok"', release=True)
        assert await waited(fresh, ["q"], finished) < WOKEN_WITHIN, "a freed slot"
        assert await waited(fresh, [DEFAULT_QUEUE], other.create_run(pending("plain"))) < WOKEN_WITHIN
        # An enqueue between a claim and the wait: the wait returns at once.
        assert await fresh.claim_queued("q", time.time(), "me", 30.0, QueueLimits(concurrency=0)) == []
        await enqueue(other, "run-2")
        await asyncio.sleep(0.3)  # the NOTIFY arrives before anyone waits
        began = time.monotonic()
        await fresh.wait_for_queues(["q"], 60.0)
        assert time.monotonic() - began < WOKEN_WITHIN, "a NOTIFY sent before the wait was lost"
    finally:
        await other.close()


async def test_a_claim_whose_reply_was_lost_returns_what_it_took(fresh: PostgresStore) -> None:
    for n in range(3):
        await enqueue(fresh, f"run-{n}")
    with recording(fresh) as pool:
        pool.fail_after = fresh._queues._sql["claim"]  # commits, then the reply is lost
        taken = await fresh.claim_queued("q", time.time(), "me", 30.0, QueueLimits(), limit=2)
    assert [(run.run_id, lease.token) for run, lease in taken] == [("run-0", 1), ("run-1", 1)], (
        "the retry claimed again instead of finding the first attempt's claims"
    )
    assert (await fresh.get_run("run-2")).status is RunStatus.PENDING  # type: ignore[union-attr]


async def test_an_enqueue_whose_reply_was_lost_is_created(fresh: PostgresStore) -> None:
    run = pending("run-1")
    with recording(fresh) as pool:
        pool.fail_after = fresh._queues._sql["enqueue"]
        stored, outcome = await fresh.enqueue_run(
            run, QueuedRun("run-1", "q", not_before=1.0, enqueued_at=1.0)
        )
    assert (stored, outcome.value) == (run, "created")
    again, outcome = await fresh.enqueue_run(run, QueuedRun("run-1", "q", not_before=1.0, enqueued_at=1.0))
    assert (again, outcome.value) == (run, "exists")


async def flood(store: PostgresStore, first: int, last: int, partition: str) -> None:
    """Pending runs ``flood-N`` of ``partition`` on queue ``q``, enqueued (N seconds ago) in one
    statement, as ``queue_enqueue`` writes them."""
    s = store._quoted

    async def fill(conn: Any) -> None:
        await conn.execute(
            f"WITH r AS (INSERT INTO {s}.runs (run_id, workflow, status, inputs, inputs_digest, "
            "created_at, updated_at, lease_token) SELECT 'flood-' || lpad(n::text, 6, '0'), 'wf', "
            f"'pending', '{{}}', 'd', n, n, 0 FROM generate_series({first}, {last}) AS n RETURNING run_id, "
            f"created_at), e AS (INSERT INTO {s}.queue_entries (run_id, queue, priority, partition_key, "
            f"not_before, enqueued_at) SELECT run_id, 'q', 0, '{partition}', created_at, created_at FROM r "
            f"RETURNING run_id, not_before) INSERT INTO {s}.queue_open (run_id, queue, priority, "
            f"enqueued_at, partition_key, not_before) SELECT run_id, 'q', 0, not_before, '{partition}', "
            "not_before FROM e"
        )
        await conn.execute(f"ANALYZE {s}.queue_open")

    await store._call("flood a partition", fill)


async def test_a_flooded_partition_costs_a_claim_the_same_however_deep(fresh: PostgresStore) -> None:
    limits = QueueLimits(concurrency=10, partition_concurrency=2)
    await flood(fresh, 1, 1_000, "tenant-a")  # far more than FLOODED, all ahead of the others
    for name, partition in (("b-0", "tenant-b"), ("c-0", "tenant-c"), ("none-0", None)):
        await enqueue(fresh, name, partition_key=partition)
    shallow = await claim_buffers(fresh, limits, limit=10)
    await flood(fresh, 1_001, 20_000, "tenant-a")
    deep = await claim_buffers(fresh, limits, limit=10)
    assert deep <= shallow + 10, (
        f"a claim read {shallow} buffers past 1,000 runs of a full partition, {deep} past 20,000"
    )
    taken = await fresh.claim_queued("q", time.time() + 1, "me", 30.0, limits, limit=10)
    assert [run.run_id for run, _ in taken] == ["flood-000001", "flood-000002", "b-0", "c-0", "none-0"]
