"""``ReadOnlyStore``: a store that reads through to another and refuses every write.

``durable replay`` checks a deploy against a store that may be production: it opens the real
store without creating anything, and hands the replay only this wrapper, so a write reached by
mistake (in the engine or in application code) fails loudly instead of changing a run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Collection, Iterable
from typing import NoReturn

from durable._records import (
    Enqueued,
    Lease,
    QueuedRun,
    QueueLimits,
    QueueStats,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
)
from durable.errors import StoreError
from durable.store import Capability, OutputWatch, Store, StreamItems

__all__ = ["ReadOnlyStore", "WriteRefused"]

_READ_CAPABILITIES = frozenset({Capability.STREAMS, Capability.QUEUES, Capability.NOTIFY})


class WriteRefused(StoreError):
    """A write reached a store opened for a read-only check."""


class ReadOnlyStore(Store):
    """Reads of ``inner`` (already opened by the caller); each write raises ``WriteRefused``."""

    name = "read-only"
    loop_bound = False

    def __init__(self, inner: Store, why: str = "durable replay writes nothing") -> None:
        self.inner = inner
        self.why = why
        self.poll_interval = inner.poll_interval
        # Per wrapped store: its ``streams`` and ``queues`` (their reads pass through: an app that
        # declares a queue checks for it) and ``notify`` (its watches are woken across
        # processes), nothing that promises a write. The class keeps none.
        self.capabilities = inner.capabilities & _READ_CAPABILITIES  # type: ignore[misc]

    def _refuse(self, method: str, run_id: str | None = None) -> NoReturn:
        where = "" if run_id is None else f" (run {run_id!r})"
        raise WriteRefused(f"{self.inner!r}: {method}{where} refused: {self.why}", run_id=run_id)

    async def open(self, *, create: bool = True) -> None:
        """The inner store is opened (without creating it) by whoever made this wrapper."""

    async def close(self) -> None:
        """Closing stays with whoever opened the inner store."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self.inner.get_run(run_id)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return await self.inner.list_runs(query)

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        found = await self.inner.due_runs(now, limit)
        return [run for run in found if workflows is None or run.workflow in workflows]

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        return await self.inner.load_steps(run_id)

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        return await self.inner.list_signals(run_id, name)

    async def get_events(self, run_id: str) -> dict[str, str]:
        return await self.inner.get_events(run_id)

    async def read_stream(self, run_id: str, key: str, offset: int, limit: int = 1000) -> StreamItems:
        return await self.inner.read_stream(run_id, key, offset, limit)

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]] | None:
        return await self.inner.list_streams(run_id)

    async def get_queued(self, run_id: str) -> QueuedRun | None:
        return await self.inner.get_queued(run_id)

    async def queue_stats(self, queue: str, now: float, *, window: float | None = None) -> QueueStats:
        return await self.inner.queue_stats(queue, now, window=window)

    async def list_queues(self) -> list[str]:
        return await self.inner.list_queues()

    @contextlib.asynccontextmanager
    async def watch_output(self, run_id: str) -> AsyncIterator[OutputWatch]:
        async with self.inner.watch_output(run_id) as watch:
            yield watch

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        self._refuse("create_run", run.run_id)

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        self._refuse("claim_run", run_id)

    async def enqueue_run(self, run: RunRecord, entry: QueuedRun) -> tuple[RunRecord, Enqueued]:
        self._refuse("enqueue_run", run.run_id)

    async def claim_queued(
        self,
        queue: str,
        now: float,
        owner: str,
        lease_seconds: float,
        limits: QueueLimits,
        *,
        limit: int = 1,
        workflows: Collection[str] | None = None,
    ) -> list[tuple[RunRecord, Lease]]:
        self._refuse(f"claim_queued({queue!r})")

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        self._refuse("renew_lease", lease.run_id)

    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
        activity: str | None = None,
    ) -> None:
        self._refuse("update_run", lease.run_id)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        self._refuse("request_cancel", run_id)

    async def reset_run(self, run_id: str) -> RunRecord | None:
        self._refuse("reset_run", run_id)

    async def delete_run(self, run_id: str) -> bool:
        self._refuse("delete_run", run_id)

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        self._refuse("save_step", lease.run_id)

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        self._refuse("save_steps", lease.run_id)

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        self._refuse("send_signal", run_id)

    async def set_event(self, lease: Lease, key: str, value: str) -> None:
        self._refuse("set_event", lease.run_id)

    async def append_stream(
        self, lease: Lease, key: str, value: str, *, write_id: str | None = None
    ) -> int | None:
        self._refuse("append_stream", lease.run_id)

    async def close_stream(self, lease: Lease, key: str) -> None:
        self._refuse("close_stream", lease.run_id)

    def __repr__(self) -> str:
        return f"<ReadOnlyStore {self.inner!r}>"
