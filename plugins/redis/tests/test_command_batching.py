"""Every store operation in flight at the same moment shares a round trip, against a real server.

Runs are created, claimed, updated, signalled and read through one batcher: calls submitted
while a round trip is in flight go together in the next pipeline, a lone call is sent at once,
and each caller gets exactly what its call would have got alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
import redis
from redis import exceptions as rx
from redis_test_kit import (
    CountingConnection,
    StoreMaker,
    counted,
    created,
    in_one_batch,
    lease_of,
    new_run,
    step,
    unknown_sha,
)

from durable import Workflow
from durable.errors import LeaseLost
from durable.store import Lease, RunRecord, RunStatus, StepRecord
from durable_redis._calls import Call
from durable_redis._store import _BATCH_IN_FLIGHT

T = TypeVar("T")


# -- through a real Workflow ------------------------------------------------------------------


async def test_a_hundred_concurrent_workflows_share_round_trips_and_a_few_connections(
    make_store: StoreMaker,
) -> None:
    store, name = counted(make_store, "cmds")
    wf = Workflow("crowd", db=store, default_retries=0)

    @wf.task
    async def work(i: int) -> int:
        return i

    @wf.workflow(id="crowd-{n}")
    async def flow(n: int) -> int:
        return sum([await work(i) for i in range(10)])

    await wf.get_store()
    before = CountingConnection.sent[name]
    assert await asyncio.gather(*(flow(n) for n in range(100))) == [45] * 100
    round_trips = CountingConnection.sent[name] - before

    # Each run alone: create_run with its index entry, 10 checkpoints and its completion.
    alone = 100 * 12
    assert round_trips <= alone // 10, round_trips
    # One connection per round trip in flight, where each command in flight once took its own.
    assert CountingConnection.opened[name] <= _BATCH_IN_FLIGHT, CountingConnection.opened[name]
    for n in (0, 99):
        run = await store.get_run(f"crowd-{n}")
        assert run is not None and run.status is RunStatus.COMPLETED and run.result == "45"
        assert len(await store.load_steps(f"crowd-{n}")) == 10
    await wf.close()


# -- each caller its own outcome --------------------------------------------------------------


async def test_concurrent_creates_of_one_run_id_create_it_exactly_once(make_store: StoreMaker) -> None:
    first = make_store()
    await first.open()
    second = make_store(prefix=first.prefix)  # another process: its own connections and batcher
    await second.open()
    records = [new_run("contested", owner=f"owner-{i}") for i in range(40)]

    outcomes = await asyncio.gather(
        *((first if i % 2 else second).create_run(record) for i, record in enumerate(records))
    )

    winners = [i for i, (_, was_created) in enumerate(outcomes) if was_created]
    assert len(winners) == 1
    winner = records[winners[0]]
    assert all(stored == winner for stored, _ in outcomes)
    assert await first.get_run("contested") == winner
    assert await first.client.zscore(first.keys.index, "contested") == winner.created_at


@pytest.mark.parametrize("callers", [1, 20])
async def test_a_create_sent_again_after_its_reply_was_lost_is_still_created_once(
    make_store: StoreMaker, monkeypatch: pytest.MonkeyPatch, callers: int
) -> None:
    store = make_store(retry_delay=0)
    await store.open()
    real = store._send_once
    lost: list[int] = []

    async def reply_lost_once(calls: list[Call]) -> list[Any]:
        replies = await real(calls)  # committed...
        if not lost and any(call.script == "create_run" for call in calls):
            lost.append(len(calls))
            raise rx.ConnectionError("connection dropped before the reply arrived")  # ...unacknowledged
        return replies

    monkeypatch.setattr(store, "_send_once", reply_lost_once)
    records = [new_run("resent", owner=f"owner-{i}") for i in range(callers)]
    if callers == 1:
        outcomes = [await store.create_run(records[0])]
    else:
        outcomes = await in_one_batch(store, *(store.create_run(record) for record in records))

    assert lost == [callers]  # each create's script, which writes the run's index entries too
    assert sum(was_created for _, was_created in outcomes) == 1
    [winner] = [record for record, (_, was_created) in zip(records, outcomes, strict=True) if was_created]
    assert all(stored == winner for stored, _ in outcomes)
    assert await store.get_run("resent") == winner


async def test_a_stale_lease_in_a_batch_of_updates_fails_only_its_caller(make_store: StoreMaker) -> None:
    store, name = counted(make_store, "cmds")
    await store.open()
    leases = await created(store, 5)
    leases[2] = Lease("run-2", "owner-a", 9, leases[2].expires_at)  # the run's token is 1

    before = CountingConnection.sent[name]
    outcomes = await in_one_batch(
        store, *(store.update_run(lease, RunStatus.COMPLETED, result="7", release=True) for lease in leases)
    )

    assert CountingConnection.sent[name] - before == 1
    lost = outcomes[2]
    assert isinstance(lost, LeaseLost) and "'run-2'" in str(lost) and "current: 1" in str(lost)
    assert [o for i, o in enumerate(outcomes) if i != 2] == [None] * 4
    for i in range(5):
        run = await store.get_run(f"run-{i}")
        assert run is not None
        if i == 2:
            assert run.status is RunStatus.RUNNING and run.result is None and run.owner == "owner-a"
        else:
            assert run.status is RunStatus.COMPLETED and run.result == "7" and run.owner is None


async def test_an_error_reply_in_a_mixed_batch_fails_only_its_caller(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store()
    await store.open()
    a, _ = await created(store, 2)
    admin.set(store.keys.run_keys("broken")[0], "not a hash")  # HGETALL answers WRONGTYPE

    outcomes = await in_one_batch(
        store,
        store.get_run("broken"),
        store.save_step(a, step("run-0", "s")),
        store.get_run("broken"),
        store.claim_run("run-1", "owner-b", 30),
        store.get_run("run-1"),
    )

    broken, saved, broken_again, refused, read = outcomes
    # A run key of another type reads as a corrupt run naming it (issue 16, items 1 and 7).
    for corrupt in (broken, broken_again):
        assert isinstance(corrupt, RunRecord) and corrupt.status is RunStatus.CORRUPT
        assert corrupt.run_id == "broken" and "WRONGTYPE" in (corrupt.error or "")
    assert isinstance(saved, StepRecord) and saved.key == "s"
    assert refused is None  # run-1's lease is live
    assert isinstance(read, RunRecord) and read.owner == "owner-a"


# -- lost scripts ------------------------------------------------------------------------------


async def test_noscript_in_a_mixed_batch_loads_those_scripts_and_sends_only_their_calls_again(
    make_store: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, name = counted(make_store, "cmds")
    await store.open()
    [held] = await created(store, 1)
    await store.create_run(new_run("pending", owner=None))
    real_shas = {script_name: script.sha for script_name, script in store._scripts.items()}
    for lost in ("claim_run", "update_run", "send_signal"):
        store._scripts[lost].sha = unknown_sha()
    real = store._send_once
    sent: list[list[str | None]] = []

    async def recorded(calls: list[Call]) -> list[Any]:
        sent.append([call.script or call.args[0] for call in calls])
        return await real(calls)

    monkeypatch.setattr(store, "_send_once", recorded)
    before = CountingConnection.sent[name]
    outcomes = await in_one_batch(
        store,
        store.save_step(held, step("run-0", "s")),
        store.claim_run("pending", "owner-b", 30),
        store.send_signal("run-0", "go", "d1", '"payload"'),
        store.get_run("run-0"),
        store.update_run(held, RunStatus.WAITING),
    )

    saved, claimed, recorded_signal, read, updated = outcomes
    assert isinstance(saved, StepRecord)
    assert isinstance(claimed, Lease) and claimed.token == 1
    assert recorded_signal is True
    assert isinstance(read, RunRecord) and read.run_id == "run-0"
    assert updated is None
    # The batch, one SCRIPT LOAD pipeline, then only the three calls that did nothing.
    assert CountingConnection.sent[name] - before == 3
    assert sent == [
        ["save_steps", "claim_run", "send_signal", "HGETALL", "update_run"],
        ["claim_run", "send_signal", "update_run"],
    ]
    assert {script_name: script.sha for script_name, script in store._scripts.items()} == real_shas
    assert len(await store.list_signals("run-0", "go")) == 1
    run = await store.get_run("run-0")
    assert run is not None and run.status is RunStatus.WAITING
    before = CountingConnection.sent[name]
    await in_one_batch(store, store.get_run("run-0"), store.update_run(held, RunStatus.RUNNING))
    assert CountingConnection.sent[name] - before == 1


# -- lone calls --------------------------------------------------------------------------------


async def test_a_lone_operation_costs_what_it_did_before_batching(make_store: StoreMaker) -> None:
    store, name = counted(make_store, "cmds")
    await store.open()
    await in_one_batch(store, *(store.create_run(new_run(f"burst-{i}")) for i in range(30)))
    run = new_run("alone")
    held = lease_of(run)
    costs: dict[str, int] = {}

    async def cost(what: str, operation: Awaitable[Any]) -> None:
        before = CountingConnection.sent[name]
        await operation
        costs[what] = CountingConnection.sent[name] - before

    await cost("create_run", store.create_run(run))  # one script: the run and its index entries
    await cost("create_run again", store.create_run(new_run("alone")))
    await cost("get_run", store.get_run("alone"))
    await cost("renew_lease", store.renew_lease(held, 30))
    await cost("save_step", store.save_step(held, step("alone", "s")))
    await cost("load_steps", store.load_steps("alone"))
    await cost("update_run", store.update_run(held, RunStatus.WAITING, release=True))
    await cost("claim_run", store.claim_run("alone", "owner-b", 30))
    await cost("send_signal", store.send_signal("alone", "go", "", "1"))
    await cost("list_signals", store.list_signals("alone"))
    await cost("request_cancel", store.request_cancel("alone"))
    await cost("reset_run", store.reset_run("alone"))
    await cost("delete_run", store.delete_run("alone"))  # the script, then the index entry

    assert costs == {
        "create_run": 1,
        "create_run again": 1,
        "get_run": 1,
        "renew_lease": 1,
        "save_step": 1,
        "load_steps": 1,
        "update_run": 1,
        "claim_run": 1,
        "send_signal": 1,
        "list_signals": 1,
        "request_cancel": 1,
        "reset_run": 1,
        "delete_run": 2,
    }


async def test_creating_an_existing_run_leaves_its_index_entries_at_the_stored_time(
    make_store: StoreMaker,
) -> None:
    # The index entries are written by the script that creates the run, from the record it
    # writes; a run that already existed keeps its entries, whatever the second record says.
    store = make_store()
    await store.open()
    first = new_run("twice")
    assert await store.create_run(first) == (first, True)

    async def entries() -> dict[str, float | None]:
        keys = store.keys
        found = {}
        for key in (
            keys.index,
            keys.status("running"),
            keys.workflow("wf"),
            keys.workflow("other"),
            keys.ids,
        ):
            found[key] = await store.client.zscore(key, "twice")
        return found

    expected = {
        store.keys.index: first.created_at,
        store.keys.status("running"): first.created_at,
        store.keys.workflow("wf"): first.created_at,
        store.keys.workflow("other"): None,
        store.keys.ids: 0.0,
    }
    assert await entries() == expected
    later = dataclasses.replace(
        first, workflow="other", created_at=first.created_at + 5, updated_at=first.created_at + 5
    )
    assert await store.create_run(later) == (first, False)
    assert await entries() == expected
