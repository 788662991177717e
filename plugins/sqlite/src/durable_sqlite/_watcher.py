"""The SQLite store's watcher of other processes' commits: how waiters in this process hear of a
signal, an enqueue or a stream item written by another process (or another store object).

SQLite cannot notify another connection, but ``PRAGMA data_version`` changes exactly when another
connection committed, and reading it costs a few microseconds: one watcher per store polls it
while anyone waits, however many wait. On a change it wakes every signal and queue waiter (they
re-read), and the output readers only of the runs whose output counter or status moved
(``_outputs.states``), so a busy file does not make every stream reader re-read at each commit.

Each check wakes the event loop (some 40 µs of CPU, mostly the loop's own work): at 100 checks a
second an idle worker spent 17 ms of CPU a second (measured on a loaded 2-core machine). So the
watcher checks every 10 ms only while the file changes (within ``IDLE_AFTER`` of the last change
it saw) or a waiter just began waiting for one thing (a signal, a run's outputs: ``hurry``), and
every ``IDLE_INTERVAL`` once all is quiet: an idle worker then spends 7 ms a second, and the first
commit after a quiet spell is seen within 50 ms (each following one within 10 ms again).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from durable.errors import StoreUnavailable
from durable_sqlite import _outputs

if TYPE_CHECKING:
    from durable_sqlite._store import SQLiteStore

WATCH_INTERVAL = 0.01
"""Seconds between checks for commits by other processes while the file changes."""
IDLE_AFTER = 1.0
"""Seconds without a change (or a new waiter hurrying) after which the watcher checks less often."""
IDLE_INTERVAL = 0.05
"""Seconds between checks once quiet: at most this late for the first commit after a quiet spell."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChangeWatcher:
    """Polls one store's ``PRAGMA data_version`` while it has waiters, and wakes them."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._task: asyncio.Future[None] | None = None
        self._states: dict[str, _outputs.State] = {}
        """Each watched run's output counter and status as last read: the baseline a change is
        measured from (taken when its first watch began, before the reader's first read)."""
        self._lively_at = time.monotonic()
        """When the watcher last saw a change or was hurried (``IDLE_AFTER``)."""
        self._pause: asyncio.Future[None] | None = None

    def start(self, *, hurry: bool = False) -> None:
        """Watch while anyone waits; ``hurry``: a waiter began waiting for one thing (a signal, a
        run's outputs), which another process may write at once: check every 10 ms again, now.
        Queue waits do not hurry: an idle worker begins one every poll."""
        if hurry:
            self._lively_at = time.monotonic()
            if self._pause is not None:
                _resolve(self._pause)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def watch_run(self, run_id: str) -> None:
        """Begin watching ``run_id``'s outputs (its watch is registered already): record its state
        now, before the reader's first read, so a change made after that read is seen as one."""
        if run_id not in self._states:
            state = (await self._store._read(lambda db: _outputs.states(db, [run_id])))[run_id]
            # An older state the watcher read meanwhile stays: measured from it, a change after it
            # wakes (at worst a reader re-reads once for nothing), none is missed.
            self._states.setdefault(run_id, state)
        self.start(hurry=True)

    def _output_runs(self) -> list[str]:
        registry: dict[str, set[asyncio.Event]] = self._store.__dict__.get("_output_waiters", {})
        return list(registry)

    def _anyone_waits(self) -> bool:
        store = self._store
        return store.has_local_waiters() or store._has_queue_waiters() or bool(self._output_runs())

    async def _watch(self) -> None:
        store = self._store
        seen: int | None = None
        while self._anyone_waits() and store._db is not None:
            try:
                version = await store._read(lambda db: db.execute("PRAGMA data_version").fetchone()[0])
                # The first check counts as a change: a commit made after a waiter's last read and
                # before this first data_version read changed nothing this loop saw. Output readers
                # are compared with their baselines, signal waiters re-read once (and wait on if
                # nothing came); queue waiters are not woken, a worker would poll for nothing: its
                # next poll is their safety net.
                if seen is None or version != seen:
                    await self._wake_outputs()
            except StoreUnavailable:
                self._states.clear()
                return
            if version != seen:
                store.wake_local_waiters()
                if seen is not None:
                    self._lively_at = time.monotonic()
                    store.wake_queue_waiters()
            seen = version
            await self._sleep()
        self._states.clear()

    async def _sleep(self) -> None:
        """Until the next check (``asyncio.sleep``'s own timer, which ``start(hurry=True)`` ends early)."""
        quiet = time.monotonic() - self._lively_at > IDLE_AFTER
        loop = asyncio.get_running_loop()
        self._pause = pause = loop.create_future()
        timer = loop.call_later(IDLE_INTERVAL if quiet else WATCH_INTERVAL, _resolve, pause)
        try:
            await pause
        finally:
            timer.cancel()
            self._pause = None

    async def _wake_outputs(self) -> None:
        """Wake the readers of each watched run whose state moved since last read (or that has no
        state yet: its baseline is being read). Read after data_version: a commit in between is
        either in these states or changes data_version again."""
        runs = self._output_runs()
        if not runs:
            self._states.clear()
            return
        current = await self._store._read(lambda db: _outputs.states(db, runs))
        for run_id, state in current.items():
            if self._states.get(run_id) != state:
                self._store.wake_output_waiters(run_id)
        watched = set(self._output_runs())
        states = self._states | current
        self._states = {run_id: state for run_id, state in states.items() if run_id in watched}
