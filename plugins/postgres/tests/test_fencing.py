"""Fencing under real concurrency: a stale executor's write is refused, or seen by the new owner."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from postgres_test_kit import RowGate, claimed_and_released, pending

from durable.errors import LeaseLost
from durable.store import Lease, RunStatus, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio


def step(run_id: str, key: str, result: str) -> StepRecord:
    now = time.time()
    return StepRecord(run_id, key, "task", "args", StepStatus.COMPLETED, result, None, 1, now, now)


@pytest.fixture
async def second(pg_url: str, schema_prefix: str) -> AsyncIterator[PostgresStore]:
    """Another store object on the same schema: another process, as far as the server can tell."""
    other = PostgresStore(pg_url, schema=schema_prefix)
    await other.open()
    yield other
    await other.close()


async def test_a_checkpoint_racing_a_takeover_is_refused_exactly_when_the_takeover_wins(
    store: PostgresStore, second: PostgresStore, unique: str
) -> None:
    # Both statements are in flight at the server at once, queued behind a lock on the run's row
    # in a chosen order: the old owner's checkpoint first (it commits, and the new owner's journal
    # has it), or the new owner's claim first (the checkpoint is refused, and nothing is stored).
    outcomes: dict[str, str] = {}
    for i in range(20):
        run_id = f"race-{unique}-{i}"
        old = await claimed_and_released(store, run_id)
        checkpoint_first = i % 2 == 0

        async def takeover(run_id: str = run_id) -> list[str] | None:
            lease = await second.claim_run(run_id, "new", 60.0)
            if lease is None:
                return None
            return [s.key for s in await second.load_steps(run_id)]

        async with RowGate(store, run_id) as gate:
            save = store.save_step(old, step(run_id, "late", '"old"'))
            first, then = (save, takeover()) if checkpoint_first else (takeover(), save)
            first_task = asyncio.ensure_future(first)
            await gate.queued(1)
            then_task = asyncio.ensure_future(then)
            await gate.queued(2)
            await gate.open()
            done = await asyncio.gather(first_task, then_task, return_exceptions=True)
        saved, seen = done if checkpoint_first else done[::-1]
        assert isinstance(seen, list), seen  # the old owner released: the takeover always succeeds
        if isinstance(saved, LeaseLost):
            outcomes[run_id] = "refused"
            assert seen == [], "the new owner read a checkpoint that was refused"
        else:
            assert isinstance(saved, StepRecord), saved
            outcomes[run_id] = "accepted"
            assert seen == ["late"], "a checkpoint committed after the new owner read the journal"
        assert outcomes[run_id] == ("accepted" if checkpoint_first else "refused")
    assert Counter(outcomes.values()) == {"accepted": 10, "refused": 10}
    for run_id, outcome in outcomes.items():
        stored = [(s.key, s.result) for s in await second.load_steps(run_id)]
        assert stored == ([("late", '"old"')] if outcome == "accepted" else []), run_id


async def test_a_superseded_executor_writes_nothing_while_the_new_one_writes_everything(
    store: PostgresStore, second: PostgresStore, unique: str
) -> None:
    run_id = f"superseded-{unique}"
    await store.create_run(pending(run_id))
    stale = await store.claim_run(run_id, "paused", 0.2)
    assert stale is not None
    await asyncio.sleep(0.3)
    current = await second.claim_run(run_id, "fresh", 60.0)
    assert current is not None and current.token == stale.token + 1

    async def write(target: PostgresStore, lease: Lease, who: str) -> list[BaseException | StepRecord]:
        return await asyncio.gather(
            *(target.save_step(lease, step(run_id, f"k{i}", f'"{who}"')) for i in range(25)),
            return_exceptions=True,
        )

    old_results, new_results = await asyncio.gather(
        write(store, stale, "stale"), write(second, current, "fresh")
    )
    assert all(isinstance(r, LeaseLost) for r in old_results)
    assert all(isinstance(r, StepRecord) and r.result == '"fresh"' for r in new_results)
    assert {s.result for s in await store.load_steps(run_id)} == {'"fresh"'}
    with pytest.raises(LeaseLost):
        await store.update_run(stale, RunStatus.COMPLETED, result='"stale"', release=True)
    with pytest.raises(LeaseLost):
        await store.save_steps(stale, [step(run_id, "batch", '"stale"')])


async def test_of_concurrent_writers_on_two_store_objects_one_checkpoint_wins(
    store: PostgresStore, second: PostgresStore, unique: str
) -> None:
    run_id = f"winner-{unique}"
    await store.create_run(pending(run_id))
    lease = await store.claim_run(run_id, "me", 60.0)
    assert lease is not None
    candidates = [step(run_id, "charge", f'"writer-{i}"') for i in range(40)]
    returned = await asyncio.gather(
        *((store if i % 2 else second).save_step(lease, c) for i, c in enumerate(candidates))
    )
    assert len(set(returned)) == 1 and returned[0] in candidates
    assert await store.load_steps(run_id) == [returned[0]]


async def test_of_concurrent_claimers_on_two_store_objects_one_wins(
    store: PostgresStore, second: PostgresStore, unique: str
) -> None:
    run_id = f"claim-{unique}"
    await store.create_run(pending(run_id))
    leases = await asyncio.gather(
        *((store if i % 2 else second).claim_run(run_id, f"o{i}", 60.0) for i in range(30))
    )
    granted = [lease for lease in leases if lease is not None]
    assert len(granted) == 1 and granted[0].token == 1


async def test_concurrent_senders_make_deliveries_visible_in_seq_order(
    store: PostgresStore, second: PostgresStore, unique: str
) -> None:
    run_id = f"order-{unique}"
    observed: list[list[int]] = []

    async def watch() -> None:
        for _ in range(60):
            observed.append([s.seq for s in await store.list_signals(run_id, "n")])
            await asyncio.sleep(0)

    await asyncio.gather(
        watch(),
        *((store if i % 2 else second).send_signal(run_id, "n", f"d{i}", str(i)) for i in range(40)),
    )
    final = [s.seq for s in await store.list_signals(run_id, "n")]
    assert len(final) == 40
    for seen in observed:
        # What a reader saw is always a prefix of the final order: the n-th delivery never changes.
        assert seen == final[: len(seen)]
