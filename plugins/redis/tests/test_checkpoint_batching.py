"""Concurrent checkpoints share round trips against a real server; each caller keeps its own outcome."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import pytest
import redis
from redis import exceptions as rx
from redis_test_kit import (
    CountingConnection,
    StoreMaker,
    counted,
    created,
    in_one_batch,
    step,
)

from durable import Workflow
from durable.errors import LeaseLost, StoreCorrupted, StoreUnavailable
from durable.store import Lease, StepRecord, StepStatus
from durable_redis import RedisStore
from durable_redis._calls import Call, grouped
from durable_redis._checkpoints import checkpoint, merged, own_replies
from durable_redis._keys import KeySpace


def saves(store: RedisStore, batch: list[tuple[Lease, tuple[StepRecord, ...]]]) -> list[Awaitable[Any]]:
    return [store.save_steps(lease, steps) for lease, steps in batch]


# -- merging (no server) ----------------------------------------------------------------------


def test_checkpoints_are_merged_per_run_and_token_in_order() -> None:
    keys = KeySpace("p")
    a1, a2, b1 = Lease("a", "o", 1, 0.0), Lease("a", "o", 2, 0.0), Lease("b", "o", 1, 0.0)
    calls = [
        checkpoint(keys, a1, (step("a", "x"),)),
        checkpoint(keys, b1, (step("b", "x"),)),
        checkpoint(keys, a1, (step("a", "y"), step("a", "z"))),
        Call.plain("reading run 'a'", "HGETALL", keys.run_keys("a")[0]),
        checkpoint(keys, a2, (step("a", "w"),)),
    ]
    groups = grouped(calls)
    assert groups == [[0, 2], [1], [3], [4]]
    first = merged([calls[i] for i in groups[0]])
    assert first.keys == keys.run_keys("a")[:2]
    assert first.args[0] == "1" and first.args[1::2] == ["x", "y", "z"]
    assert merged([calls[3]]) is calls[3]

    # Each merged checkpoint reads its own part of the reply, as if it had been sent alone.
    members = [calls[0], calls[2]]
    assert own_replies([1, "", "c[...]", ""], members) == [[1, ""], [1, "c[...]", ""]]
    assert own_replies(1, members) == [1, 1]
    assert own_replies([0, 7], members) == [[0, 7], [0, 7]]
    error = rx.ResponseError("WRONGTYPE")
    copies = own_replies(error, members)
    assert [type(c) for c in copies] == [rx.ResponseError] * 2 and copies[0] is not copies[1]


# -- through a real Workflow ------------------------------------------------------------------


async def test_a_hundred_concurrent_workflows_share_checkpoint_round_trips(make_store: StoreMaker) -> None:
    store, name = counted(make_store, "batch")
    wf = Workflow("batched", db=store, default_retries=0)
    calls: Counter[tuple[int, int]] = Counter()

    @wf.task
    async def work(n: int, i: int) -> int:
        calls[n, i] += 1
        return i

    @wf.workflow(id="crowd-{n}")
    async def flow(n: int) -> int:
        return sum([await work(n, i) for i in range(10)])

    await wf.get_store()
    before = CountingConnection.checkpoints[name]
    assert await asyncio.gather(*(flow(n) for n in range(100))) == [45] * 100
    checkpoint_round_trips = CountingConnection.checkpoints[name] - before

    assert calls == {(n, i): 1 for n in range(100) for i in range(10)}
    for n in range(100):
        stored = await store.load_steps(f"crowd-{n}")
        assert len(stored) == 10 and len({s.key for s in stored}) == 10
        assert sorted(str(s.result) for s in stored) == sorted(str(i) for i in range(10))
    # 1,000 checkpoints; batching sends them in a few dozen round trips (one each without it).
    assert 1 <= checkpoint_round_trips <= 100, checkpoint_round_trips
    await wf.close()


# -- one batch, several callers ---------------------------------------------------------------


async def test_one_batch_is_one_round_trip_and_a_stale_lease_fails_only_its_own_item(
    make_store: StoreMaker,
) -> None:
    store, name = counted(make_store, "batch")
    await store.open()
    leases = await created(store, 5)
    stale = Lease("run-3", "owner-a", 0, leases[3].expires_at)  # the run's token is 1
    batch = [(lease, (step(lease.run_id, "s"),)) for lease in leases[:3]]
    batch += [(stale, (step("run-3", "s"),)), (leases[4], (step("run-4", "s"),))]

    before = CountingConnection.sent[name]
    outcomes = await in_one_batch(store, *saves(store, batch))
    assert CountingConnection.sent[name] - before == 1

    lost = outcomes[3]
    assert isinstance(lost, LeaseLost) and "'run-3'" in str(lost) and "current: 1" in str(lost)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [[b[1][0]] for i, b in enumerate(batch) if i != 3]
    assert await store.load_steps("run-3") == []
    for i in (0, 1, 2, 4):
        assert [s.key for s in await store.load_steps(f"run-{i}")] == ["s"]


async def test_concurrent_callers_each_get_their_own_lease_lost_or_step(make_store: StoreMaker) -> None:
    store = make_store()
    await store.open()
    leases = await created(store, 20)
    leases[-1] = Lease("run-19", "owner-a", 7, leases[-1].expires_at)  # last: queued behind the first
    assert store._batcher is not None
    flushes = store._batcher.flushes

    outcomes = await asyncio.gather(
        *(store.save_step(lease, step(lease.run_id, "s")) for lease in leases), return_exceptions=True
    )

    assert store._batcher.flushes - flushes < len(leases)  # they did share a round trip
    lost = outcomes[-1]
    assert isinstance(lost, LeaseLost) and "'run-19'" in str(lost)
    assert all(isinstance(o, StepRecord) and o.run_id == f"run-{i}" for i, o in enumerate(outcomes[:-1]))
    assert await store.load_steps("run-19") == []
    for i in range(19):
        assert [s.key for s in await store.load_steps(f"run-{i}")] == ["s"]


async def test_a_duplicate_key_in_a_batch_returns_the_first_writers_step(make_store: StoreMaker) -> None:
    store = make_store()
    await store.open()
    a, b = await created(store, 2)
    earlier = step("run-1", "done", '"earlier"')
    await store.save_step(b, earlier)
    await store.save_step(b, step("run-1", "failed", '"x"', StepStatus.FAILED))
    first, second = step("run-0", "k", '"first"'), step("run-0", "k", '"second"')
    retry = step("run-1", "failed", '"fixed"')

    outcomes = await in_one_batch(
        store, *saves(store, [(a, (first,)), (a, (second,)), (b, (step("run-1", "done", '"late"'), retry))])
    )

    assert outcomes == [[first], [first], [earlier, retry]]  # a failed step is replaced by a later write
    assert {s.key: s.result for s in await store.load_steps("run-0")} == {"k": '"first"'}
    assert {s.key: s.result for s in await store.load_steps("run-1")} == {
        "done": '"earlier"',
        "failed": '"fixed"',
    }


async def test_several_steps_of_one_run_stay_atomic_in_a_batch(make_store: StoreMaker) -> None:
    store = make_store()
    await store.open()
    [held] = await created(store, 1)
    stale = Lease("run-0", "owner-a", 5, held.expires_at)
    batch = [(held, (step("run-0", "a"), step("run-0", "b")))]
    batch.append((stale, (step("run-0", "c"), step("run-0", "d"))))
    outcomes = await in_one_batch(store, *saves(store, batch))
    assert isinstance(outcomes[0], list) and [s.key for s in outcomes[0]] == ["a", "b"]
    assert isinstance(outcomes[1], LeaseLost)
    assert sorted(s.key for s in await store.load_steps("run-0")) == ["a", "b"]


async def test_an_error_in_one_runs_script_fails_only_that_runs_items(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store()
    await store.open()
    leases = await created(store, 3)
    admin.set(store.keys.run_keys("run-1")[1], "not a hash")  # the script fails with WRONGTYPE
    batch = [(lease, (step(lease.run_id, "s"),)) for lease in leases]
    batch.append((leases[1], (step("run-1", "t"),)))

    outcomes = await in_one_batch(store, *saves(store, batch))

    # A steps key of another type is a corrupt store: StoreCorrupted naming the run and the field.
    assert [type(o) for o in outcomes] == [list, StoreCorrupted, list, StoreCorrupted]
    assert outcomes[1] is not outcomes[3]  # each caller raises its own exception
    for error in (outcomes[1], outcomes[3]):
        assert isinstance(error, StoreCorrupted) and "WRONGTYPE" in str(error)
        assert (error.run_id, error.field) == ("run-1", "steps")
    assert [s.key for s in await store.load_steps("run-2")] == ["s"]


# -- lost scripts, lost replies ---------------------------------------------------------------


async def test_noscript_in_a_batch_loads_the_script_and_sends_those_calls_again(
    make_store: StoreMaker,
) -> None:
    store, name = counted(make_store, "batch")
    await store.open()
    leases = await created(store, 4)
    script = store._scripts["save_steps"]
    real_sha = script.sha
    # The server answers NOSCRIPT for a script it does not hold, as after SCRIPT FLUSH or a restart.
    # A SHA it never saw does that without flushing the shared server's cache under other tests.
    script.sha = hashlib.sha1(b"-- not loaded " + secrets.token_bytes(8)).hexdigest()
    batch = [(lease, (step(lease.run_id, "s"),)) for lease in leases]

    before = CountingConnection.sent[name]
    outcomes = await in_one_batch(store, *saves(store, batch))

    assert outcomes == [[b[1][0]] for b in batch]
    # The batch, SCRIPT LOAD, the batch again
    assert CountingConnection.sent[name] - before == 3
    assert script.sha == real_sha
    for lease in leases:
        assert [s.key for s in await store.load_steps(lease.run_id)] == ["s"]
    before = CountingConnection.sent[name]
    await in_one_batch(store, *saves(store, [(lease, (step(lease.run_id, "t"),)) for lease in leases]))
    assert CountingConnection.sent[name] - before == 1


def checkpoint_batches(calls: list[Call]) -> bool:
    """Whether ``calls`` is a batch of checkpoints."""
    return len(calls) > 1 and all(call.script == "save_steps" for call in calls)


async def test_a_batch_resent_after_its_reply_was_lost_returns_each_callers_own_step(
    make_store: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(retry_delay=0)
    await store.open()
    leases = await created(store, 3)
    real = store._send_once
    attempts: list[int] = []

    async def reply_lost_once(calls: list[Call]) -> list[Any]:
        replies = await real(calls)  # committed...
        if checkpoint_batches(calls):
            attempts.append(len(calls))
            if len(attempts) == 1:
                raise rx.ConnectionError("connection dropped before the reply arrived")  # ...unacknowledged
        return replies

    monkeypatch.setattr(store, "_send_once", reply_lost_once)
    batch = [(lease, (step(lease.run_id, "s"), step(lease.run_id, "t"))) for lease in leases]
    outcomes = await in_one_batch(store, *saves(store, batch))

    assert attempts == [3, 3]
    assert outcomes == [list(b[1]) for b in batch]
    for lease in leases:
        assert sorted(s.key for s in await store.load_steps(lease.run_id)) == ["s", "t"]


async def test_a_transient_error_in_one_reply_resends_the_whole_batch(
    make_store: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(retry_delay=0)
    await store.open()
    leases = await created(store, 3)
    real = store._send_once
    attempts = 0

    async def read_only_once(calls: list[Call]) -> list[Any]:
        nonlocal attempts
        replies = await real(calls)
        if checkpoint_batches(calls):
            attempts += 1
            if attempts == 1:  # a failover: one call hit a replica that just became read-only
                replies[1] = rx.ReadOnlyError("You can't write against a read only replica.")
        return replies

    monkeypatch.setattr(store, "_send_once", read_only_once)
    batch = [(lease, (step(lease.run_id, "s"),)) for lease in leases]
    assert await in_one_batch(store, *saves(store, batch)) == [[b[1][0]] for b in batch]
    assert attempts == 2


async def test_a_batch_that_never_reaches_redis_fails_every_caller_with_store_unavailable(
    make_store: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(retries=2, retry_delay=0)
    await store.open()
    leases = await created(store, 5)
    real = store._send_once
    attempts = 0

    async def unreachable(calls: list[Call]) -> list[Any]:
        nonlocal attempts
        if not checkpoint_batches(calls):
            return await real(calls)
        attempts += 1
        raise rx.ConnectionError("Connection refused")

    monkeypatch.setattr(store, "_send_once", unreachable)
    batch = [(lease, (step(lease.run_id, "s"),)) for lease in leases]
    outcomes = await in_one_batch(store, *saves(store, batch))

    assert attempts == 3
    assert all(isinstance(o, StoreUnavailable) and "gave up after 3 attempts" in str(o) for o in outcomes)
    assert len({id(o) for o in outcomes}) == len(outcomes)  # each caller raises its own exception


# -- lone steps and closing -------------------------------------------------------------------


async def test_a_lone_step_is_still_one_round_trip_after_a_burst(make_store: StoreMaker) -> None:
    store, name = counted(make_store, "batch")
    await store.open()
    leases = await created(store, 30)
    await asyncio.gather(*(store.save_step(lease, step(lease.run_id, "burst")) for lease in leases))
    before = CountingConnection.sent[name]
    for i in range(5):
        await store.save_step(leases[0], step("run-0", f"alone-{i}"))
    assert CountingConnection.sent[name] - before == 5
    before = CountingConnection.sent[name]
    await store.save_steps(leases[1], [step("run-1", "x"), step("run-1", "y")])
    assert CountingConnection.sent[name] - before == 1


async def test_closing_the_store_waits_for_checkpoints_already_submitted(make_store: StoreMaker) -> None:
    store = make_store()
    await store.open()
    leases = await created(store, 50)
    saving = [asyncio.ensure_future(store.save_step(lease, step(lease.run_id, "s"))) for lease in leases]
    await asyncio.sleep(0)  # every save_step has been submitted; most are queued behind the first
    await store.close()
    outcomes = await asyncio.gather(*saving, return_exceptions=True)
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    await store.open()
    for lease in leases:
        assert [s.key for s in await store.load_steps(lease.run_id)] == ["s"]
