"""The SQLite store's watcher of other processes' commits: how waiters in this process hear of a
signal, an enqueue or a stream item written by another process (or another store object).

SQLite cannot notify another connection, but ``PRAGMA data_version`` changes exactly when another
connection committed, and reading it costs a few microseconds: one watcher per store polls it
while anyone waits, however many wait. On a change it wakes every signal and queue waiter (they
re-read), and the output readers only of the runs whose output counter or status moved
(``_outputs.states``), so a busy file does not make every stream reader re-read at each commit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from durable.errors import StoreUnavailable
from durable_sqlite import _outputs

if TYPE_CHECKING:
    from durable_sqlite._store import SQLiteStore

WATCH_INTERVAL = 0.01
"""Seconds between checks for commits by other processes while someone waits."""


class ChangeWatcher:
    """Polls one store's ``PRAGMA data_version`` while it has waiters, and wakes them."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._task: asyncio.Future[None] | None = None
        self._states: dict[str, _outputs.State] = {}
        """Each watched run's output counter and status as last read: the baseline a change is
        measured from (taken when its first watch began, before the reader's first read)."""

    def start(self) -> None:
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
        self.start()

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
                # The first check compares the outputs too: a commit made between a watch's
                # baseline and this first data_version read changed nothing this loop saw.
                if seen is None or version != seen:
                    await self._wake_outputs()
            except StoreUnavailable:
                return
            if seen is not None and version != seen:
                store.wake_local_waiters()
                store.wake_queue_waiters()
            seen = version
            await asyncio.sleep(WATCH_INTERVAL)
        self._states.clear()

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
