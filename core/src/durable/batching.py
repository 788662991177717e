"""Combine store writes that are in flight at the same moment into one round trip.

A store over a network pays a round trip per statement. When many runs checkpoint
concurrently, ``WriteBatcher`` sends the writes that arrived while an earlier
round trip was in flight together, as one, and so are writes made by tasks that
resume in the same event-loop turn (a wave of runs woken by one reply). A lone
write with nothing else ready to run is sent at once, from the caller's own task:
a sequential workflow pays nothing for batching.

Durability is unchanged: ``submit`` returns only after the flush that carried its
item returned, and it raises that item's own error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["WriteBatcher", "nothing_else_ready"]

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

Flush = Callable[[list[I]], Awaitable[Sequence[R | BaseException]]]


def nothing_else_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether no other callback waits to run in this turn of ``loop``: a write made now
    cannot be joined by another before the next turn.

    Reads asyncio's private run queue; ``False`` on loops without one (uvloop), where
    callers fall back to waiting a turn.
    """
    ready = getattr(loop, "_ready", None)
    return ready is not None and not ready


def _answer(answers: list[tuple[asyncio.Future[R], R | BaseException]]) -> None:
    for future, outcome in answers:
        if future.done():  # its caller was cancelled; the write itself happened
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class WriteBatcher(Generic[I, R]):
    """Sends items through ``flush`` in batches of up to ``max_batch``, ``max_in_flight`` at once.

    ``flush(items)`` returns one outcome per item, in order: a result, or the exception
    that item's ``submit`` raises. An exception raised by ``flush`` itself fails every
    item of the batch. With more than one flush in flight, the callers of a batch resume
    in two waves, a loop turn apart.
    """

    def __init__(self, flush: Flush[I, R], *, max_batch: int = 500, max_in_flight: int = 1) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._flush = flush
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting_callers = 0
        self._idle: asyncio.Event | None = None  # made by drain(): an event belongs to one loop
        self.flushes = 0
        """Round trips made so far (for tests that count them)."""

    async def submit(self, item: I) -> R:
        """Write ``item`` with whatever else is waiting; return its outcome once flushed."""
        self._waiting_callers += 1
        try:
            if self._may_send_alone(1):
                [outcome] = await self._send_alone([item])
            else:  # every checkpoint of concurrent runs comes here: one future, no more
                future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
                self._pending.append((item, future))
                self._start_flushes()
                return await future
        finally:
            self._caller_left()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def submit_all(self, items: Sequence[I]) -> list[R | BaseException]:
        """Write ``items`` together, with whatever else is waiting; each one's outcome, in order.

        The items of one call share a flush when they fit in one (``max_batch``), so a store
        operation made of several commands costs one round trip, without a task per command.
        """
        self._waiting_callers += 1
        try:
            if self._may_send_alone(len(items)):
                return await self._send_alone(list(items))
            loop = asyncio.get_running_loop()
            futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
            self._pending.extend(zip(items, futures, strict=True))
            self._start_flushes()
            return await asyncio.gather(*futures, return_exceptions=True)
        finally:
            self._caller_left()

    def _caller_left(self) -> None:
        # Callers are counted so that drain() also waits for items not flushed yet.
        self._waiting_callers -= 1
        if not self._waiting_callers and self._idle is not None:
            self._idle.set()

    def _may_send_alone(self, count: int) -> bool:
        idle = self._in_flight < self.max_in_flight and not self._pending
        return idle and count <= self.max_batch and nothing_else_ready(asyncio.get_running_loop())

    async def _send_alone(self, items: list[I]) -> list[R | BaseException]:
        self._in_flight += 1
        return await self._flushed(items)

    async def _flushed(self, items: list[I]) -> list[R | BaseException]:
        """``flush(items)`` as one of the flushes in flight (counted by the caller): one outcome
        per item. When it ends, the next flush may start."""
        self.flushes += 1
        try:
            outcomes = list(await self._flush(items))
        finally:
            self._in_flight -= 1
            self._start_flushes()
        if len(outcomes) != len(items):
            raise RuntimeError(f"flush returned {len(outcomes)} outcomes for {len(items)} items")
        return outcomes

    def _start_flushes(self) -> None:
        # A flush task takes its batch when it starts, in the next loop turn, so that writes
        # of tasks resuming in this turn ride along.
        batches = -(-len(self._pending) // self.max_batch)
        for _ in range(min(batches, self.max_in_flight - self._in_flight)):
            self._in_flight += 1
            # The loop keeps only a weak reference to a task; _send drops this one when it ends.
            # Not through a done callback: that would sit in the loop's ready queue just when
            # the flushed callers resume, and their next write, finding something else ready,
            # would be queued for a task instead of sent at once (a sequential workflow would
            # pay a task per write from then on).
            self._tasks.add(asyncio.get_running_loop().create_task(self._send()))

    async def _send(self) -> None:
        try:
            await self._send_batch()
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)

    async def _send_batch(self) -> None:
        batch = self._pending[: self.max_batch]
        del self._pending[: self.max_batch]
        if not batch:  # an earlier task took them
            self._in_flight -= 1
            return
        try:
            outcomes = await self._flushed([item for item, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        answers = list(zip((future for _, future in batch), outcomes, strict=True))
        if self.max_in_flight == 1 or len(answers) == 1:
            _answer(answers)
            return
        # Two waves of callers, a loop turn apart. Woken all at once, the callers' next writes
        # would leave together once the last of them got there: this process and the store would
        # take turns being idle. Woken in waves, the first wave's writes go out on the free
        # flush slot while the second wave is still working (Redis, scenario B: +15 %).
        half = len(answers) // 2
        _answer(answers[:half])
        try:
            await asyncio.sleep(0)
        finally:  # even if cancelled meanwhile: these writes happened
            _answer(answers[half:])

    async def drain(self) -> None:
        """Wait until every submitted item is flushed (before closing a store).

        Covers items queued behind a lone write still in flight (no flush task exists for
        them yet) and the writes of callers that were cancelled.
        """
        while self._waiting_callers or self._tasks or self._pending:
            if self._waiting_callers:
                if self._idle is None:
                    self._idle = asyncio.Event()
                self._idle.clear()
                await self._idle.wait()
            elif self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:  # queued items whose callers left, waiting for a free slot
                await asyncio.sleep(0.001)
