"""Concurrent checkpoints, run creations and run updates share statements; each caller still gets
what a lone call gives it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from postgres_test_kit import RecordingPool, RowGate, claimed_and_released, owned, recording

import durable_postgres._batching as batching
from durable import Workflow
from durable.batching import WriteBatcher
from durable.errors import LeaseLost, StoreError
from durable.store import Lease, RunRecord, RunStatus, StepRecord, StepStatus
from durable_postgres import PostgresStore


@pytest.fixture
def recorded(store: PostgresStore) -> Iterator[RecordingPool]:
    """Records the statements ``store`` sends from now on."""
    with recording(store) as pool:
        yield pool


def step(
    run_id: str, key: str, result: str | None = '"ok"', status: StepStatus = StepStatus.COMPLETED
) -> StepRecord:
    now = time.time()
    error = '"boom"' if status is StepStatus.FAILED else None
    return StepRecord(run_id, key, "task", "args", status, result, error, 1, now, now)


async def leases(store: PostgresStore, prefix: str, count: int) -> list[Lease]:
    """``count`` new runs owned with token 1, and their leases."""
    for i in range(count):
        await store.create_run(owned(f"{prefix}-{i}"))
    return [Lease(f"{prefix}-{i}", "me", 1, 0.0) for i in range(count)]


async def saved_together(store: PostgresStore, *items: tuple[Lease, StepRecord]) -> list[Any]:
    """Save ``items`` concurrently: submitted in one loop turn, they go as one flush.
    Returns every outcome (a step or an exception), in order."""
    return await in_one_batch(store._steps, *(store.save_step(lease, s) for lease, s in items))


async def test_concurrent_workflows_share_statements_and_store_every_step_once(
    pg_url: str, schema_prefix: str, unique: str
) -> None:
    workflows, steps = 100, 10
    wf = Workflow(
        "batched", db=PostgresStore(pg_url, schema=f"{schema_prefix}_wf_{unique}"), default_retries=0
    )
    executed: Counter[str] = Counter()

    @wf.task
    async def work(tag: str, i: int) -> int:
        executed[f"{tag}/{i}"] += 1
        return i * i

    @wf.workflow
    async def chain(tag: str) -> int:
        return sum([await work(tag, i) for i in range(steps)])

    async with wf:
        store = await wf.get_store()
        assert isinstance(store, PostgresStore)
        with recording(store) as pool:
            results = await asyncio.gather(*(chain.run(f"b-{n}", f"t{n}") for n in range(workflows)))
        assert results == [sum(i * i for i in range(steps))] * workflows
        assert set(executed.values()) == {1} and len(executed) == workflows * steps
        for n in range(workflows):
            journal = await store.load_steps(f"b-{n}")
            assert len(journal) == steps and {s.status for s in journal} == {StepStatus.COMPLETED}
        kinds = pool.kinds(store)
    step_statements = (
        kinds["save_step"] + kinds["save_step_batch"] + kinds["stored_step"] + kinds["stored_steps"]
    )
    assert kinds["save_step_batch"] >= 1
    assert step_statements <= workflows * steps // 10, kinds  # 1,000 checkpoints: about 20 statements here


async def test_a_stale_lease_in_a_batch_fails_only_its_own_item(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    first, *others = await leases(store, f"stale-{unique}", 5)
    taken = others[1]
    await store.update_run(taken, RunStatus.RUNNING, release=True)
    assert await store.claim_run(taken.run_id, "thief", 60.0) is not None  # token 2 now
    recorded.statements.clear()
    lone, *outcomes = await saved_together(
        store, (first, step(first.run_id, "k")), *((lease, step(lease.run_id, "k")) for lease in others)
    )
    assert isinstance(lone, StepRecord)
    stale = outcomes.pop(1)
    assert isinstance(stale, LeaseLost)
    assert repr(taken.run_id) in str(stale) and "token 1 is stale (current: 2)" in str(stale)
    assert all(
        isinstance(o, StepRecord) and o.run_id == lease.run_id
        for o, lease in zip(outcomes, others[:1] + others[2:], strict=True)
    )
    assert await store.load_steps(taken.run_id) == []
    for lease in (first, *others[:1], *others[2:]):
        assert [s.key for s in await store.load_steps(lease.run_id)] == ["k"]
    kinds = recorded.kinds(store)
    assert kinds["save_step"] == 0 and kinds["save_step_batch"] == 1 and kinds["stored_steps"] == 1, kinds


async def test_a_stale_lease_of_a_run_that_is_gone_names_the_run(store: PostgresStore, unique: str) -> None:
    first, second = await leases(store, f"gone-{unique}", 2)
    ghost = Lease(f"gone-{unique}-ghost", "me", 1, 0.0)
    _, saved, lost = await saved_together(
        store,
        (first, step(first.run_id, "k")),
        (second, step(second.run_id, "k")),
        (ghost, step(ghost.run_id, "k")),
    )
    assert isinstance(saved, StepRecord)
    assert isinstance(lost, LeaseLost) and repr(ghost.run_id) in str(lost) and "current: None" in str(lost)


async def test_a_duplicate_key_in_a_batch_returns_the_first_writers_step(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    first, lease = await leases(store, f"dup-{unique}", 2)
    winner, loser = step(lease.run_id, "charge", '"first"'), step(lease.run_id, "charge", '"second"')
    recorded.statements.clear()
    _, got_winner, got_loser = await saved_together(
        store, (first, step(first.run_id, "k")), (lease, winner), (lease, loser)
    )
    assert got_winner == winner and got_loser == winner
    assert await store.load_steps(lease.run_id) == [winner]
    kinds = recorded.kinds(store)
    assert kinds["save_step_batch"] == 1 and kinds["stored_steps"] == 1 and kinds["save_step"] == 0, kinds


async def test_a_failed_step_in_a_batch_is_replaced_by_a_later_duplicate(
    store: PostgresStore, unique: str
) -> None:
    first, lease = await leases(store, f"retry-{unique}", 2)
    failed = step(lease.run_id, "charge", None, StepStatus.FAILED)
    done = step(lease.run_id, "charge", '"paid"')
    _, got_failed, got_done = await saved_together(
        store, (first, step(first.run_id, "k")), (lease, failed), (lease, done)
    )
    # As two sequential calls: the failed attempt is written, then replaced by the completed one.
    assert got_failed == failed and got_done == done
    assert await store.load_steps(lease.run_id) == [done]


async def test_a_batch_item_already_stored_returns_the_stored_step(store: PostgresStore, unique: str) -> None:
    first, lease = await leases(store, f"stored-{unique}", 2)
    earlier = step(lease.run_id, "k", '"earlier"')
    assert await store.save_step(lease, earlier) == earlier
    _, again = await saved_together(
        store, (first, step(first.run_id, "k")), (lease, step(lease.run_id, "k", '"later"'))
    )
    assert again == earlier


async def test_a_lone_step_after_a_burst_is_still_one_round_trip(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    runs = await leases(store, f"lone-{unique}", 20)
    outcomes = await asyncio.gather(*(store.save_step(lease, step(lease.run_id, "burst")) for lease in runs))
    assert all(isinstance(o, StepRecord) for o in outcomes)
    recorded.statements.clear()
    recorded.acquires = 0
    for i in range(5):
        new = step(runs[0].run_id, f"after-{i}")
        assert await store.save_step(runs[0], new) == new
    # The step batcher's flushes reuse the connection it holds: no acquire from the pool.
    assert recorded.kinds(store) == Counter(save_step=5) and recorded.acquires == 0


async def test_a_batch_retried_after_its_reply_was_lost_gives_every_caller_its_step(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    runs = await leases(store, f"lost-{unique}", 6)
    recorded.fail_after = store._sql["save_step_batch"]
    recorded.statements.clear()
    written = [step(lease.run_id, "k", f'"{lease.run_id}"') for lease in runs]
    outcomes = await saved_together(store, *zip(runs, written, strict=True))
    assert outcomes == written  # the first attempt committed: its rows are each caller's success
    for lease, s in zip(runs, written, strict=True):
        assert await store.load_steps(lease.run_id) == [s]
    kinds = recorded.kinds(store)
    assert kinds["save_step_batch"] == 2 and kinds["stored_steps"] == 1, kinds


async def test_a_value_postgres_cannot_store_fails_only_its_own_item(
    store: PostgresStore, unique: str
) -> None:
    first, good, bad = await leases(store, f"nul-{unique}", 3)
    _, saved, refused = await saved_together(
        store,
        (first, step(first.run_id, "k")),
        (good, step(good.run_id, "k")),
        (bad, step(bad.run_id, "k", '"a\x00b"')),
    )
    assert isinstance(saved, StepRecord)
    assert isinstance(refused, StoreError) and not isinstance(refused, LeaseLost) and "NUL" in str(refused)
    assert [s.key for s in await store.load_steps(good.run_id)] == ["k"]
    assert await store.load_steps(bad.run_id) == []


async def test_large_results_are_split_over_several_statements(
    store: PostgresStore, recorded: RecordingPool, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batching, "BATCH_CHARS", 25)
    runs = await leases(store, f"large-{unique}", 7)
    written = [step(lease.run_id, "k", f'"{"x" * 8}{i}"') for i, lease in enumerate(runs)]  # 11 chars each
    recorded.statements.clear()
    outcomes = await saved_together(store, *zip(runs, written, strict=True))
    assert outcomes == written
    kinds = recorded.kinds(store)
    # One alone, then six in chunks of two (22 characters each): three batch statements.
    assert kinds == Counter(save_step=1, save_step_batch=3), kinds


async def test_a_batched_checkpoint_racing_a_takeover_is_refused_exactly_when_the_takeover_wins(
    store: PostgresStore, pg_url: str, schema_prefix: str, unique: str
) -> None:
    # As in test_fencing, with the stale checkpoint inside a batch statement: the batch and the
    # new owner's claim queue behind a lock on the run's row, in a chosen order.
    async with PostgresStore(pg_url, schema=schema_prefix) as second:
        filler = (await leases(store, f"filler-{unique}", 1))[0]
        outcomes: dict[str, str] = {}
        for i in range(16):
            run_id = f"brace-{unique}-{i}"
            old = await claimed_and_released(store, run_id)
            checkpoint_first = i % 2 == 0

            async def takeover(run_id: str = run_id) -> list[str]:
                lease = await second.claim_run(run_id, "new", 60.0)
                assert lease is not None
                return [s.key for s in await second.load_steps(run_id)]

            async def batched(run_id: str = run_id, old: Lease = old, i: int = i) -> list[Any]:
                return await saved_together(
                    store,
                    (filler, step(filler.run_id, f"f{i}")),
                    (filler, step(filler.run_id, f"g{i}")),
                    (old, step(run_id, "late", '"old"')),
                )

            with recording(store) as pool:
                async with RowGate(store, run_id) as gate:
                    first, then = (batched(), takeover()) if checkpoint_first else (takeover(), batched())
                    first_task = asyncio.ensure_future(first)
                    await gate.queued(1)
                    then_task = asyncio.ensure_future(then)
                    await gate.queued(2)
                    await gate.open()
                    done = await asyncio.gather(first_task, then_task)
            assert pool.kinds(store)["save_step_batch"] == 1  # the three went as one batch statement
            batch, seen = done if checkpoint_first else done[::-1]
            assert [type(outcome) for outcome in batch[:2]] == [StepRecord, StepRecord], batch
            if isinstance(batch[2], LeaseLost):
                outcomes[run_id] = "refused"
                assert seen == [], "the new owner read a checkpoint that was refused"
            else:
                assert isinstance(batch[2], StepRecord), batch[2]
                outcomes[run_id] = "accepted"
                assert seen == ["late"], "a checkpoint committed after the new owner read the journal"
            assert outcomes[run_id] == ("accepted" if checkpoint_first else "refused")
        assert Counter(outcomes.values()) == {"accepted": 8, "refused": 8}
        for run_id, outcome in outcomes.items():
            stored = [(s.key, s.result) for s in await second.load_steps(run_id)]
            assert stored == ([("late", '"old"')] if outcome == "accepted" else []), run_id
        # The filler's checkpoints shared the batch statements, the refused ones too: all stored.
        filler_keys = sorted(s.key for s in await second.load_steps(filler.run_id))
        assert filler_keys == sorted(f"{kind}{i}" for kind in "fg" for i in range(16))


@pytest.mark.parametrize("moment", ["lone flush in flight", "batch in flight"])
async def test_close_writes_every_checkpoint_already_submitted(
    pg_url: str, schema_prefix: str, unique: str, moment: str
) -> None:
    store = PostgresStore(pg_url, schema=schema_prefix)
    await store.open()
    runs = await leases(store, f"close-{unique}", 10)
    batcher = store._steps
    assert batcher is not None
    saves = [asyncio.ensure_future(store.save_step(runs[0], step(runs[0].run_id, "k")))]
    if moment == "lone flush in flight":
        await asyncio.sleep(0.0001)  # nothing else ready when it submits: sent alone, at once
    saves += [asyncio.ensure_future(store.save_step(lease, step(lease.run_id, "k"))) for lease in runs[1:]]
    await asyncio.sleep(0)  # every save submitted
    deadline = time.monotonic() + 10
    while moment == "batch in flight" and not batcher._tasks:
        assert time.monotonic() < deadline, "the saves never went as a batch"
        await asyncio.sleep(0)
    await store.close()
    assert all(isinstance(s.result(), StepRecord) for s in saves)
    assert batcher.flushes == (2 if moment == "lone flush in flight" else 1)
    async with PostgresStore(pg_url, schema=schema_prefix) as reopened:
        for lease in runs:
            assert [s.key for s in await reopened.load_steps(lease.run_id)] == ["k"]


def test_chunks_by_size_keep_order_and_let_a_large_item_go_alone() -> None:
    lease = Lease("r", "me", 1, 0.0)
    items = [(lease, step("r", f"k{i}", "x" * size)) for i, size in enumerate([4, 4, 10, 1, 1, 1])]
    chunks = list(batching.by_size(items, 8, batching.step_weight))
    assert [[s.key for _, s in chunk] for chunk in chunks] == [["k0", "k1"], ["k2"], ["k3", "k4", "k5"]]


# -- run creations and updates -------------------------------------------------------------


async def in_one_batch(batcher: WriteBatcher[Any, Any] | None, *calls: Awaitable[Any]) -> list[Any]:
    """Await ``calls`` concurrently: submitted in one loop turn, they go as one flush.
    Returns every outcome (a result or an exception), in order."""
    assert batcher is not None
    flushes = batcher.flushes
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert batcher.flushes - flushes == 1, "not one flush"
    return outcomes


def released(run_id: str) -> RunRecord:
    """A run as ``update_run(..., release=True)`` of its owner left it (compare without times)."""
    return RunRecord(run_id, "wf", RunStatus.COMPLETED, "{}", "d", 0.0, 0.0, result='"done"', lease_token=1)


def without_times(run: RunRecord | None) -> RunRecord | None:
    return None if run is None else replace(run, created_at=0.0, updated_at=0.0)


async def test_concurrent_workflows_create_and_finish_their_runs_in_shared_statements(
    pg_url: str, schema_prefix: str, unique: str
) -> None:
    workflows, steps = 100, 3
    wf = Workflow(
        "runs", db=PostgresStore(pg_url, schema=f"{schema_prefix}_runs_{unique}"), default_retries=0
    )

    @wf.task
    async def work(i: int) -> int:
        return i

    @wf.workflow
    async def chain(n: int) -> int:
        if n % 10 == 9:
            raise ValueError(f"workflow {n} fails")
        return sum([await work(i) for i in range(steps)]) + n

    async with wf:
        store = await wf.get_store()
        assert isinstance(store, PostgresStore)
        with recording(store) as pool:
            outcomes = await asyncio.gather(
                *(chain.run(f"r-{n}", n) for n in range(workflows)), return_exceptions=True
            )
        for n, outcome in enumerate(outcomes):
            run = await store.get_run(f"r-{n}")
            assert run is not None and run.owner is None and run.lease_expires_at is None
            if n % 10 == 9:
                assert isinstance(outcome, ValueError) and run.status is RunStatus.FAILED
                assert run.error is not None and f"workflow {n} fails" in run.error
            else:
                assert outcome == sum(range(steps)) + n
                assert run.status is RunStatus.COMPLETED and run.result == str(outcome)
        kinds = pool.kinds(store)
    assert kinds["create_run_batch"] >= 1 and kinds["update_run_batch"] >= 1, kinds
    # One statement per run for its creation and one for its outcome was 200 statements here.
    run_statements = sum(n for kind, n in kinds.items() if kind.startswith(("create", "update", "get_run")))
    assert run_statements <= 20, kinds
    assert sum(kinds.values()) <= 40, kinds  # 100 runs, 300 checkpoints


async def test_concurrent_creates_of_one_run_have_exactly_one_creator(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    run_id = f"one-{unique}"
    callers = [replace(owned(run_id), owner=f"caller-{i}") for i in range(50)]
    recorded.statements.clear()
    _, *outcomes = await in_one_batch(
        store._creates, store.create_run(owned(f"{run_id}-lone")), *(store.create_run(run) for run in callers)
    )
    assert [created for _, created in outcomes] == [True] + [False] * 49  # the batch's first inserts it
    assert recorded.kinds(store) == Counter(create_run_batch=1, get_runs=1)
    assert {stored for stored, _ in outcomes} == {callers[0]}
    assert await store.get_run(run_id) == callers[0]


async def test_a_batched_create_of_an_existing_run_returns_the_stored_one(
    store: PostgresStore, unique: str
) -> None:
    taken = f"taken-{unique}"
    other = RunRecord(taken, "other-wf", RunStatus.PENDING, '{"x": 1}', "other", 1.0, 2.0)
    assert await store.create_run(other) == (other, True)
    new = owned(f"new-{unique}")
    _, got_new, got_taken = await in_one_batch(
        store._creates,
        store.create_run(owned(f"lone-{unique}")),
        store.create_run(new),
        store.create_run(owned(taken)),
    )
    assert got_new == (new, True)
    assert got_taken == (other, False)
    assert await store.get_run(taken) == other


async def test_a_stale_update_in_a_batch_fails_only_its_own_caller(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    first, waiting, *others = await leases(store, f"upd-{unique}", 5)
    taken = others[1]
    await store.update_run(taken, RunStatus.RUNNING, release=True)
    thief = await store.claim_run(taken.run_id, "thief", 60.0)
    assert thief is not None and thief.token == 2
    before = await store.get_run(waiting.run_id)
    recorded.statements.clear()
    lone, parked, *outcomes = await in_one_batch(
        store._updates,
        store.update_run(first, RunStatus.COMPLETED, result='"done"', release=True),
        store.update_run(waiting, RunStatus.WAITING, wake_at=123.5),  # keeps its lease
        *(store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True) for lease in others),
    )
    kinds = recorded.kinds(store)  # before the checks below read runs
    assert lone is None and parked is None
    stale = outcomes.pop(1)
    assert isinstance(stale, LeaseLost)
    assert repr(taken.run_id) in str(stale) and "token 1 is stale (current: 2)" in str(stale)
    assert outcomes == [None, None]
    for lease in (first, *others[:1], *others[2:]):
        assert without_times(await store.get_run(lease.run_id)) == released(lease.run_id)
    stolen = await store.get_run(taken.run_id)
    assert stolen is not None and stolen.owner == "thief" and stolen.status is RunStatus.RUNNING
    assert stolen.result is None
    parked_run = await store.get_run(waiting.run_id)
    assert before is not None and parked_run is not None and before.owner == "me"
    assert parked_run.status is RunStatus.WAITING and parked_run.wake_at == 123.5
    assert (parked_run.owner, parked_run.lease_expires_at) == (before.owner, before.lease_expires_at)
    assert kinds == Counter(update_run_batch=1, tokens=1), kinds


async def test_updates_of_one_run_in_a_batch_apply_in_order(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    first, lease = await leases(store, f"order-{unique}", 2)
    recorded.statements.clear()
    outcomes = await in_one_batch(
        store._updates,
        store.update_run(first, RunStatus.RUNNING),
        store.update_run(lease, RunStatus.WAITING, wake_at=5.0),
        store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True),
    )
    assert outcomes == [None, None, None]
    # The batch's statement takes the run's first update, the second follows it alone.
    assert recorded.kinds(store) == Counter(update_run_batch=1, update_release=1)
    assert without_times(await store.get_run(lease.run_id)) == released(lease.run_id)


async def test_a_create_batch_retried_after_its_reply_was_lost_gives_every_caller_its_outcome(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    other = RunRecord(f"lost-{unique}-taken", "other-wf", RunStatus.PENDING, "{}", "other", 1.0, 2.0)
    await store.create_run(other)
    runs = [owned(f"lost-{unique}-{i}") for i in range(5)]
    duplicate = replace(runs[2], owner="second")
    recorded.fail_after = store._sql["create_run_batch"]
    recorded.statements.clear()
    outcomes = await in_one_batch(
        store._creates,
        *(store.create_run(run) for run in runs),
        store.create_run(owned(other.run_id)),
        store.create_run(duplicate),
    )
    kinds = recorded.kinds(store)  # before the checks below read runs
    # The first attempt committed: its rows are each first caller's creation.
    assert outcomes == [(run, True) for run in runs] + [(other, False), (runs[2], False)]
    for run in runs:
        assert await store.get_run(run.run_id) == run
    assert kinds == Counter(create_run_batch=2, get_runs=1), kinds


async def test_an_update_batch_retried_after_its_reply_was_lost_gives_every_caller_its_outcome(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    first, *others = await leases(store, f"lostupd-{unique}", 4)
    ghost = Lease(f"lostupd-{unique}-ghost", "me", 1, 0.0)
    recorded.fail_after = store._sql["update_run_batch"]
    recorded.statements.clear()
    outcomes = await in_one_batch(
        store._updates,
        *(
            store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True)
            for lease in (first, *others)
        ),
        store.update_run(ghost, RunStatus.COMPLETED, result='"done"', release=True),
    )
    kinds = recorded.kinds(store)  # before the checks below read runs
    lost = outcomes.pop()
    assert outcomes == [None] * 4
    assert isinstance(lost, LeaseLost) and repr(ghost.run_id) in str(lost) and "current: None" in str(lost)
    for lease in (first, *others):
        assert without_times(await store.get_run(lease.run_id)) == released(lease.run_id)
    assert kinds == Counter(update_run_batch=2, tokens=1), kinds


async def test_a_run_postgres_cannot_store_fails_only_its_own_create(
    store: PostgresStore, unique: str
) -> None:
    good, bad = (
        owned(f"nulrun-{unique}-good"),
        replace(owned(f"nulrun-{unique}-bad"), inputs='"a\x00b"'),
    )
    _, saved, refused = await in_one_batch(
        store._creates,
        store.create_run(owned(f"nulrun-{unique}-lone")),
        store.create_run(good),
        store.create_run(bad),
    )
    assert saved == (good, True)
    assert isinstance(refused, StoreError) and not isinstance(refused, LeaseLost) and "NUL" in str(refused)
    assert await store.get_run(bad.run_id) is None


async def test_a_lone_create_and_update_after_a_burst_are_still_one_round_trip_each(
    store: PostgresStore, recorded: RecordingPool, unique: str
) -> None:
    burst = await asyncio.gather(*(store.create_run(owned(f"solo-{unique}-{i}")) for i in range(20)))
    assert all(created for _, created in burst)
    await asyncio.gather(
        *(store.update_run(Lease(run.run_id, "me", 1, 0.0), RunStatus.RUNNING) for run, _ in burst)
    )
    recorded.statements.clear()
    recorded.acquires = 0
    for i in range(5):
        run = owned(f"solo-{unique}-after-{i}")
        assert await store.create_run(run) == (run, True)
        await store.update_run(
            Lease(run.run_id, "me", 1, 0.0), RunStatus.COMPLETED, result='"done"', release=True
        )
    # Each batcher reuses the connection it holds: no acquire from the pool.
    assert recorded.kinds(store) == Counter(create_run=5, update_release=5) and recorded.acquires == 0


@pytest.mark.parametrize("kind", ["creates", "updates"])
async def test_close_makes_every_run_write_already_submitted(
    pg_url: str, schema_prefix: str, unique: str, kind: str
) -> None:
    store = PostgresStore(pg_url, schema=schema_prefix)
    await store.open()
    runs = await leases(store, f"closerun-{unique}", 10) if kind == "updates" else []
    if kind == "creates":
        calls = [store.create_run(owned(f"closerun-{unique}-{i}")) for i in range(10)]
    else:
        calls = [
            store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True) for lease in runs
        ]
    futures = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)  # every call submitted: one alone, nine queued behind it
    await store.close()
    assert all(f.exception() is None for f in futures)
    async with PostgresStore(pg_url, schema=schema_prefix) as reopened:
        for i in range(10):
            run = await reopened.get_run(f"closerun-{unique}-{i}")
            assert run is not None
            assert run.status is (RunStatus.COMPLETED if kind == "updates" else RunStatus.RUNNING)
