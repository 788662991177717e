"""Workflow time: the clock the engine reads for the times it records and the waits it makes.

Wall time, unless ``durable.testing.virtual_time()`` installs a virtual clock: then ``now`` and
``sleep`` are that clock's, and the waits below go through it, so durable sleeps, signal
timeouts, run deadlines and retry backoffs pass in virtual time instead of waiting.

What is on this clock: a run's ``created_at`` and ``deadline``, a sleep's wake time, a step's
``started_at`` and ``finished_at``, the ``now`` a worker polls with, retry backoff waits, signal
timeouts. What is not, on purpose: leases (a lease says a process is alive; it is judged on the
store's clock and renewed on the event loop's, so a run's lease never expires because virtual
time jumped), store outage retries, and waiting for another executor's run (``wait_for``,
``claim_or_wait``). Virtual time only ever runs ahead of the wall clock, so a time a store stamps
with its own clock (a signal's delivery wakes a run "now") is never in the virtual future.

Call sites read ``_clock.now()`` and ``await _clock.sleep(seconds)``: one module attribute each,
the cost of ``time.time()`` and ``asyncio.sleep`` they replace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from durable.context import RunContext
    from durable.store import SignalRecord, Store


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Virtual(Protocol):
    """What the engine asks of a virtual clock (``durable.testing.VirtualClock``)."""

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Cancellable: ...
    def expect(self, when: float) -> None: ...
    def run_began(self, ctx: RunContext, parent: RunContext | None) -> None: ...
    def run_ended(self, ctx: RunContext, parent: RunContext | None) -> None: ...
    def advanced(self) -> asyncio.Future[None]: ...
    async def wait_for_signal(
        self, store: Store, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None: ...


virtual: Virtual | None = None
"""The virtual clock in force, or ``None`` for wall time."""

now: Callable[[], float] = time.time
"""Workflow time, seconds since the epoch."""

sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
"""Wait ``seconds`` of workflow time."""


def call_at(when: float, callback: Callable[..., object], *args: Any) -> Cancellable:
    """Call ``callback(*args)`` on the running loop when workflow time reaches ``when``."""
    clock = virtual
    if clock is not None:
        return clock.call_at(when, callback, *args)
    return asyncio.get_running_loop().call_later(max(0.0, when - time.time()), callback, *args)


def expect(when: float) -> None:
    """Something is due at ``when`` (a parked run's wake time): virtual time may jump there."""
    clock = virtual
    if clock is not None:
        clock.expect(when)


async def wait_for_signal(
    store: Store, run_id: str, name: str, index: int, timeout: float | None
) -> SignalRecord | None:
    """``store.wait_for_signal``, its timeout counted in workflow time."""
    clock = virtual
    if clock is None:
        return await store.wait_for_signal(run_id, name, index, timeout)
    return await clock.wait_for_signal(store, run_id, name, index, timeout)


async def advanced() -> Literal[True]:
    """Returns when virtual time next jumps (a worker polls again then: a parked run may be due)."""
    assert virtual is not None
    await virtual.advanced()
    return True


def install(
    clock: Virtual | None, now_fn: Callable[[], float], sleep_fn: Callable[[float], Awaitable[None]]
) -> None:
    """Put ``clock`` in force (``None``, ``time.time``, ``asyncio.sleep``: back to wall time)."""
    global virtual, now, sleep
    virtual, now, sleep = clock, now_fn, sleep_fn
