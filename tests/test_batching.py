"""WriteBatcher: concurrent writes share round trips; each caller gets its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from durable.batching import WriteBatcher


class Recorder:
    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay

    async def flush(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        return [ValueError(f"item {i} refused") if i < 0 else i * 10 for i in items]


async def test_a_lone_write_is_one_flush_of_one_item() -> None:
    rec = Recorder(delay=0)
    batcher = WriteBatcher(rec.flush)
    assert [await batcher.submit(i) for i in range(3)] == [0, 10, 20]
    assert rec.batches == [[0], [1], [2]]
    assert batcher.flushes == 3


async def test_a_wave_of_writes_from_tasks_resuming_together_is_one_flush() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    assert results == [i * 10 for i in range(100)]
    assert rec.batches == [list(range(100))]


async def test_writes_arriving_during_a_flush_share_the_next_one() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.001)  # nothing else ready when it submits: sent alone, at once
    assert rec.batches == [[0]]
    results = await asyncio.gather(*(batcher.submit(i) for i in range(1, 100)))
    assert await first == 0 and results == [i * 10 for i in range(1, 100)]
    assert rec.batches == [[0], list(range(1, 100))]


async def test_max_batch_and_max_in_flight_bound_each_flush() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush, max_batch=30, max_in_flight=2)
    await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    assert [len(b) for b in rec.batches] == [30, 30, 30, 10]  # two at a time
    assert sorted(i for b in rec.batches for i in b) == list(range(100))
    assert batcher.flushes == len(rec.batches)


@pytest.mark.parametrize(
    ("in_flight", "second_round"), [(1, [[*range(100)]]), (2, [[*range(50)], [*range(50, 100)]])]
)
async def test_with_two_flushes_in_flight_callers_resume_in_two_waves(
    in_flight: int, second_round: list[list[int]]
) -> None:
    # Callers resumed in two waves: the first wave's next writes leave while the second wave
    # has not resumed yet. With one flush in flight there is nothing to gain: one wave.
    rec = Recorder()
    batcher = WriteBatcher(rec.flush, max_in_flight=in_flight)

    async def twice(i: int) -> None:
        await batcher.submit(i)
        await batcher.submit(i)

    await asyncio.gather(*(twice(i) for i in range(100)))
    assert rec.batches == [[*range(100)], *second_round]


async def test_callers_of_the_second_wave_are_answered_even_if_the_flush_task_is_cancelled() -> None:
    rec = Recorder(delay=0.01)
    batcher = WriteBatcher(rec.flush, max_in_flight=2)
    cancelled = []

    async def caller(i: int) -> int:
        result = await batcher.submit(i)
        if not cancelled:  # the first caller of the first wave, in the turn between the waves
            [flush] = batcher._tasks
            flush.cancel()
            cancelled.append(flush)
        return result

    async with asyncio.timeout(5):  # unanswered callers would wait forever
        assert await asyncio.gather(*(caller(i) for i in range(10))) == [i * 10 for i in range(10)]
    assert cancelled and cancelled[0].cancelled()


async def test_an_items_error_goes_to_its_caller_only() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, -3, 4)), return_exceptions=True)
    assert outcomes[:2] == [10, 20] and outcomes[3] == 40
    assert isinstance(outcomes[2], ValueError) and "item -3" in str(outcomes[2])


async def test_a_failing_flush_fails_every_item_of_its_batch_and_the_next_batch_still_runs() -> None:
    calls: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.01)
        if 2 in items:
            raise ConnectionError("server went away")
        return items

    batcher = WriteBatcher(flush, max_batch=2)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(5)), return_exceptions=True)
    assert outcomes[:2] == [0, 1]  # batches [0, 1], [2, 3], [4]
    assert [type(o) for o in outcomes[2:4]] == [ConnectionError, ConnectionError]
    assert outcomes[4] == 4


async def test_a_flush_returning_the_wrong_number_of_outcomes_fails_its_items() -> None:
    async def flush(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return items[:1]

    batcher = WriteBatcher(flush)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "1 outcomes for 3 items" in str(o) for o in outcomes)


async def test_a_cancelled_caller_does_not_break_its_batch() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    assert await first == 10
    assert await waiting[1] == 30
    assert waiting[0].cancelled()
    await batcher.drain()
    assert rec.batches == [[1], [2, 3]]  # the write of a cancelled caller may still happen


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WriteBatcher(Recorder().flush, max_batch=0)


async def test_drain_waits_for_items_queued_behind_a_lone_write() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush)
    callers = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
    await asyncio.sleep(0)  # the first is in flight alone, the rest queued with no task yet
    await batcher.drain()
    assert all(c.done() for c in callers)
    assert sorted(i for b in rec.batches for i in b) == list(range(5))


async def test_a_sequential_writer_after_a_flush_task_is_sent_alone_again() -> None:
    # Once a write has gone through a flush task, nothing of the batcher's may be left in the
    # loop's ready queue when its caller resumes: the caller's next write would find something
    # else ready, be queued for a task too, and a sequential workflow would pay a task per
    # write from then on.
    carriers: list[asyncio.Task[object] | None] = []

    async def flush(items: list[int]) -> list[int]:
        carriers.append(asyncio.current_task())
        await asyncio.sleep(0)
        return items

    batcher = WriteBatcher(flush)
    asyncio.get_running_loop().call_soon(lambda: None)  # something else ready: queued, not sent
    assert await batcher.submit(0) == 0
    assert len(carriers) == 1 and carriers[0] is not asyncio.current_task()  # a flush task
    carriers.clear()
    assert [await batcher.submit(i) for i in range(5)] == [0, 1, 2, 3, 4]
    assert carriers == [asyncio.current_task()] * 5  # each sent from this task, at once


async def test_submit_all_sends_one_callers_items_in_one_flush_with_their_own_outcomes() -> None:
    rec = Recorder(delay=0)
    batcher = WriteBatcher(rec.flush)
    outcomes = await batcher.submit_all([1, -2, 3])
    assert outcomes[0] == 10 and outcomes[2] == 30
    assert isinstance(outcomes[1], ValueError) and "item -2" in str(outcomes[1])  # returned, not raised
    assert rec.batches == [[1, -2, 3]] and batcher.flushes == 1


async def test_submit_all_during_a_flush_rides_the_next_one_with_other_callers() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.001)  # sent alone, at once; the next writes wait for it
    together = await asyncio.gather(batcher.submit_all([1, 2]), batcher.submit(3), batcher.submit_all([4]))
    assert await first == 0 and together == [[10, 20], 30, [40]]
    assert rec.batches == [[0], [1, 2, 3, 4]]


async def test_drain_waits_for_the_items_of_submit_all() -> None:
    rec = Recorder()
    batcher = WriteBatcher(rec.flush)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.001)
    queued = asyncio.ensure_future(batcher.submit_all([1, 2]))
    await asyncio.sleep(0)
    await batcher.drain()
    assert queued.done() and queued.result() == [10, 20] and await first == 0
