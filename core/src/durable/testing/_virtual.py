"""``VirtualClock``: workflow time that jumps ahead when every run waits on it."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from durable import _clock
from durable.context import _current
from durable.errors import ConfigurationError

if TYPE_CHECKING:
    from durable.context import RunContext
    from durable.store import SignalRecord, Store

log = logging.getLogger("durable.testing")

SETTLE_ROUNDS = 16
"""Event-loop rounds in which nothing may change (no timer added or fired, no run beginning,
ending or starting to wait) before virtual time jumps: what is ready to run runs first."""
QUIET_ROUNDS = 3
"""Of those, consecutive rounds with nothing else scheduled (where the loop lets us see it)."""


class _Timer:
    __slots__ = ("args", "callback", "cancelled", "clock", "when")

    def __init__(self, clock: VirtualClock, when: float, callback: Callable[..., object], args: Any) -> None:
        self.clock, self.when, self.callback, self.args = clock, when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.clock._changed()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class VirtualClock:
    """Workflow time for tests: the wall clock plus the jumps it made (so it never runs behind).

    With ``auto`` (the default) it jumps to the next thing due (a sleep's end, a signal timeout, a
    retry's backoff, a run's deadline, a parked run's wake time) as soon as no run is busy: every
    run executing in this process is waiting on this clock or on a child run, and the event loop
    has nothing else ready. Code outside runs that waits on the wall clock (a test polling, a
    request to a server) is not seen: hold the clock meanwhile (``with clock.hold():``) if a run's
    timeout must not pass before it is done. Without ``auto``, time moves only with the wall clock
    and ``advance``.
    """

    def __init__(self, *, auto: bool = True) -> None:
        self.auto = auto
        self.jumps: list[float] = []
        """Seconds each jump or ``advance`` moved time on, in order."""
        self._offset = 0.0
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()
        self._runs: dict[RunContext, int] = {}
        """Runs executing now -> how many waits (on this clock, or on a child run) each is in."""
        self._busy = 0
        """Runs executing now that are in no wait, plus ``hold()`` blocks open."""
        self._generation = 0
        self._wake: asyncio.Event | None = None
        self._advanced: set[asyncio.Future[None]] = set()
        self._driver: asyncio.Task[None] | None = None

    # -- reading it ----------------------------------------------------------------

    def time(self) -> float:
        """Virtual time, seconds since the epoch."""
        return time.time() + self._offset

    def now(self) -> datetime:
        """Virtual time as an aware UTC ``datetime``."""
        return datetime.fromtimestamp(self.time(), UTC)

    @property
    def offset(self) -> float:
        """How far virtual time is ahead of the wall clock, in seconds."""
        return self._offset

    # -- moving it -----------------------------------------------------------------

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """No jumps inside this block (time still moves with the wall clock and ``advance``)."""
        self._busy += 1
        self._changed()
        try:
            yield
        finally:
            self._busy -= 1
            self._changed()

    async def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``, fire what fell due, and let the woken code run."""
        if seconds < 0:
            raise ConfigurationError(f"VirtualClock.advance({seconds}): time only moves forward")
        self._jump(self._offset + seconds)
        self._fire_due()
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)

    def _jump(self, offset: float) -> None:
        if offset <= self._offset:
            return
        self.jumps.append(offset - self._offset)
        self._offset = offset
        self._changed()
        for future in self._advanced:
            _resolve(future)
        self._advanced.clear()

    # -- what the engine calls (durable._clock.Virtual) ------------------------------

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (the engine's ``_clock.sleep``)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_at(self.time() + seconds, _resolve, future)
        try:
            with self._waiting():
                await future
        finally:
            timer.cancel()

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> _Timer:
        timer = _Timer(self, when, callback, args)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        self._changed()
        return timer

    def expect(self, when: float) -> None:
        self.call_at(when, _nothing)

    def advanced(self) -> asyncio.Future[None]:
        """A future resolved when time next jumps (workers poll again then)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._advanced.add(future)
        return future

    def run_began(self, ctx: RunContext, parent: RunContext | None) -> None:
        self._runs[ctx] = 0
        self._busy += 1
        if parent is not None and parent in self._runs:
            self._enter(parent)  # a parent executing a child run waits for it
        self._changed()

    def run_ended(self, ctx: RunContext, parent: RunContext | None) -> None:
        if self._runs.pop(ctx, None) == 0:
            self._busy -= 1
        if parent is not None and parent in self._runs:
            self._leave(parent)
        self._changed()

    async def wait_for_signal(
        self, store: Store, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        """The store's wait without its timeout, raced against a virtual one."""
        with self._waiting():
            if timeout is None:
                return await store.wait_for_signal(run_id, name, index, None)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            timer = self.call_at(self.time() + timeout, _resolve, future)
            waiting = asyncio.ensure_future(store.wait_for_signal(run_id, name, index, None))
            try:
                either: set[asyncio.Future[Any]] = {waiting, future}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if waiting.done():
                    return waiting.result()
            finally:
                timer.cancel()
                if not waiting.done():
                    waiting.cancel()
                    with contextlib.suppress(BaseException):
                        await waiting
        # Timed out: one last read, as a store's own timeout makes (a delivery just in wins).
        deliveries = await store.list_signals(run_id, name)
        return deliveries[index] if len(deliveries) > index else None

    # -- bookkeeping -------------------------------------------------------------------

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        ctx = _current.get()
        if ctx is None or ctx not in self._runs:
            yield
            return
        self._enter(ctx)
        try:
            yield
        finally:
            if ctx in self._runs:
                self._leave(ctx)

    def _enter(self, ctx: RunContext) -> None:
        waits = self._runs[ctx]
        self._runs[ctx] = waits + 1
        if waits == 0:
            self._busy -= 1
        self._changed()

    def _leave(self, ctx: RunContext) -> None:
        waits = self._runs[ctx] - 1
        self._runs[ctx] = waits
        if waits == 0:
            self._busy += 1
        self._changed()

    def _changed(self) -> None:
        self._generation += 1
        if self._wake is not None:
            self._wake.set()

    def _next(self) -> _Timer | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][2] if self._timers else None

    def _fire_due(self) -> None:
        now = self.time()
        while (timer := self._next()) is not None and timer.when <= now:
            heapq.heappop(self._timers)
            timer.cancelled = True
            self._changed()
            try:
                timer.callback(*timer.args)
            except Exception:
                log.exception("virtual clock: a timer callback failed")

    async def _settled(self) -> bool:
        """Whether the loop went ``SETTLE_ROUNDS`` rounds with nothing here changing and no run
        busy, the last ``QUIET_ROUNDS`` of them with nothing else scheduled (where asyncio's run
        queue can be seen). ``False`` also for a loop that never goes quiet: asked again later."""
        generation = self._generation
        ready = getattr(asyncio.get_running_loop(), "_ready", None)
        quiet = 0
        for rounds in range(1, SETTLE_ROUNDS * 8 + 1):
            await asyncio.sleep(0)
            if self._generation != generation or self._busy:
                return False
            quiet = quiet + 1 if not ready else 0
            if rounds >= SETTLE_ROUNDS and (ready is None or quiet >= QUIET_ROUNDS):
                return True
        return False

    async def _drive(self) -> None:
        assert self._wake is not None
        while True:
            self._fire_due()
            timer = self._next()
            if timer is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.auto and self._busy == 0:
                if await self._settled() and self._next() is timer:
                    self._jump(timer.when - time.time())
                continue
            self._wake.clear()
            wait = timer.when - self.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()

    def _start(self) -> None:
        self._wake = asyncio.Event()
        self._driver = asyncio.get_running_loop().create_task(self._drive(), name="durable-virtual-clock")

    async def _stop(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
        # A run still waiting here would wait forever on a clock nobody moves: tell it.
        for _, _, timer in self._timers:
            for arg in timer.args:
                if isinstance(arg, asyncio.Future) and not arg.done():
                    arg.set_exception(
                        ConfigurationError("virtual_time() ended while a run was waiting on it")
                    )
        self._timers.clear()
        for future in self._advanced:
            future.cancel()

    def __repr__(self) -> str:
        return f"<VirtualClock {self.now().isoformat()} (+{self._offset:.6g} s) auto={self.auto}>"


def _nothing() -> None:
    pass


@asynccontextmanager
async def virtual_time(
    *, auto: bool = True, start: float | datetime | None = None
) -> AsyncIterator[VirtualClock]:
    """Run durable's workflow time on a ``VirtualClock`` inside this block (``async with``).

    Durable sleeps, signal timeouts, run deadlines, retry backoffs and the times steps and runs
    record then pass in virtual time: a workflow that sleeps a week finishes in milliseconds.
    ``start`` puts virtual time at a later moment than now (never earlier: stores stamp some
    times with the wall clock, and virtual time must not run behind them). Leases stay on the
    wall clock. One virtual clock at a time, on one event loop.
    """
    if _clock.virtual is not None:
        raise ConfigurationError("virtual_time(): a virtual clock is already in force")
    clock = VirtualClock(auto=auto)
    if start is not None:
        when = start.timestamp() if isinstance(start, datetime) else float(start)
        if when < time.time():
            raise ConfigurationError(
                f"virtual_time(start={start!r}): virtual time cannot start before the wall clock"
            )
        clock._offset = when - time.time()
    clock._start()
    _clock.install(clock, clock.time, clock.sleep)
    try:
        yield clock
    finally:
        _clock.install(None, time.time, asyncio.sleep)
        await clock._stop()
