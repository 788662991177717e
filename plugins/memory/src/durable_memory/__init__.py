"""In-memory store for durable: complete and fast, gone when the process ends.

Every method runs without awaiting in between its reads and writes, so each one is
atomic on the event loop without a lock. Values are the JSON text the core produced,
so a caller mutating what a task returned cannot reach a checkpoint.

Queues (``Capability.QUEUES``): a queue entry per queued run, the unfinished runs of each
queue, and each queue's recent first claims (its rate window); a queue claim counts live leases
among the queue's unfinished runs, so a slot is freed as soon as a lease lapses.

Events and streams (``Capability.STREAMS``): ``durable_memory._outputs``, one entry per run that
has any, deleted with the run.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import time
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from durable._lifecycle import DUE_STATUSES, is_due
from durable.errors import LeaseLost, StoreNotFound
from durable.hookspecs import StoreBackend, hookimpl
from durable.store import (
    DEFAULT_QUEUE,
    Capability,
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
    StepStatus,
    Store,
    StreamItems,
)
from durable_memory._indexes import ParkedRuns, RunIndexes, is_parked
from durable_memory._outputs import RunOutputs

__all__ = ["InMemoryStore"]


class InMemoryStore(Store):
    """A store kept in this process's memory (``memory://``)."""

    name = "memory"
    capabilities = frozenset({Capability.NOTIFY, Capability.QUEUES, Capability.STREAMS})
    loop_bound = False  # plain dicts: the data must outlive one asyncio.run()

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._indexes = RunIndexes()
        self._live: set[str] = set()
        """Ids of runs in ``DUE_STATUSES`` that are not parked, and of parked runs whose wake time
        came: polls look only here (and at ``_parked`` for the runs whose time has come)."""
        self._parked = ParkedRuns()
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._signals: dict[str, list[SignalRecord]] = {}
        self._seq = 0
        self._created = False
        self._queued: dict[str, QueuedRun] = {}
        self._members: dict[str, set[str]] = {}
        """Queue -> its runs that are not completed or cancelled: claims and counts look only here."""
        self._starts: dict[str, list[float]] = {}
        """Queue -> times of its runs' first claims within the last ``_horizon`` seconds, oldest first."""
        self._horizon = 3600.0
        self._debounced: dict[tuple[str, str], str] = {}
        """(queue, debounce key) -> the run those starts collapse into, while it is pending and unstarted."""
        self._outputs: dict[str, RunOutputs] = {}

    async def open(self, *, create: bool = True) -> None:
        if not create and not self._created:
            raise StoreNotFound(
                f"{self!r} holds no data: an in-memory store's data lives in the store object that "
                "created it, in the process that opened it"
            )
        self._created = True

    async def close(self) -> None:
        pass

    # -- runs --------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        existing = self._runs.get(run.run_id)
        if existing is not None:
            return existing, False
        self._put(run)
        self._indexes.added(run)
        return run, True

    def _put(self, run: RunRecord) -> None:
        previous = self._runs.get(run.run_id)
        self._runs[run.run_id] = run
        if previous is not None:
            self._indexes.changed(previous, run)
        if run.status in DUE_STATUSES and not is_parked(run):
            self._live.add(run.run_id)
        else:
            self._live.discard(run.run_id)
            if is_parked(run) and run.wake_at is not None:
                self._parked.park(run)
        ended = run.status.is_final or run.status is RunStatus.FAILED
        if ended and (previous is None or previous.status is not run.status):
            self.wake_output_waiters(run.run_id)  # readers of its streams end
        entry = self._queued.get(run.run_id)
        if entry is None:
            if previous is None and run.status is RunStatus.PENDING:
                self.wake_queue_waiters(DEFAULT_QUEUE)
            return
        members = self._members.setdefault(entry.queue, set())
        if run.status.is_final:
            members.discard(run.run_id)
        else:
            members.add(run.run_id)
        # A new run, a slot freed, a run woken or reset: waiting claimers of its queue look again.
        now = time.time()
        if (
            previous is None
            or (previous.lease_is_live(now) and not run.lease_is_live(now))
            or (run.wake_at is not None and run.wake_at != previous.wake_at)
            or (run.status is RunStatus.PENDING and previous.status is not RunStatus.PENDING)
        ):
            self.wake_queue_waiters(entry.queue)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        run = self._runs.get(run_id)
        now = time.time()
        if run is None or run.status.is_final or run.lease_is_live(now):
            return None
        return self._take(run, owner, lease_seconds, now)

    def _take(self, run: RunRecord, owner: str, lease_seconds: float, now: float) -> Lease:
        lease = Lease(run.run_id, owner, run.lease_token + 1, now + lease_seconds)
        self._put(replace(
            run,
            status=RunStatus.RUNNING,
            owner=owner,
            lease_token=lease.token,
            lease_expires_at=lease.expires_at,
            wake_at=None,
            activity=None,
            updated_at=now,
        ))  # fmt: skip
        return lease

    def _fenced(self, lease: Lease) -> RunRecord:
        run = self._runs.get(lease.run_id)
        if run is None or run.lease_token != lease.token:
            raise LeaseLost.stale(lease.run_id, lease.token, None if run is None else run.lease_token)
        return run

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        run = self._fenced(lease)
        now = time.time()
        run = replace(
            run,
            owner=lease.owner,
            lease_expires_at=now + lease_seconds,
            activity=run.activity if activity is None else activity,
        )
        self._put(run)
        return run

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
        run = self._fenced(lease)
        changes: dict[str, Any] = {}
        if release:
            changes = {"owner": None, "lease_expires_at": None}
        self._put(replace(
            run, status=status, result=result, error=error, wake_at=wake_at, activity=activity,
            updated_at=time.time(), **changes,
        ))  # fmt: skip

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        if run is None:
            return None
        now = time.time()
        status = run.status
        if not status.is_final and not run.lease_is_live(now):
            status = RunStatus.CANCELLED
        run = replace(run, cancel_requested=True, status=status, updated_at=now)
        self._put(run)
        return run

    async def reset_run(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        if run is None or run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            return run  # only failed and cancelled runs are reset (durable._lifecycle)
        run = replace(
            run,
            status=RunStatus.PENDING,
            cancel_requested=False,
            error=None,
            wake_at=None,
            activity=None,
            updated_at=time.time(),
        )
        self._put(run)
        return run

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        found = (run for run in self._indexes.candidates(query, self._runs) if query.matches(run))
        return list(itertools.islice(found, query.offset, query.offset + query.limit))

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        self._live.update(self._parked.due(now, self._runs))
        due = [
            run
            for run in map(self._runs.__getitem__, self._live)
            if is_due(run, now)
            and (workflows is None or run.workflow in workflows)
            and run.run_id not in self._queued  # queue claims serve those
        ]
        due.sort(key=lambda run: (run.created_at, run.run_id))
        return due[:limit]

    async def delete_run(self, run_id: str) -> bool:
        self._steps.pop(run_id, None)
        self._signals.pop(run_id, None)
        if self._outputs.pop(run_id, None) is not None:
            self.wake_output_waiters(run_id)
        self._live.discard(run_id)
        entry = self._queued.pop(run_id, None)
        if entry is not None:
            self._members.get(entry.queue, set()).discard(run_id)
        run = self._runs.pop(run_id, None)
        if run is None:
            return False
        self._indexes.removed(run)
        return True

    # -- queues ------------------------------------------------------------------

    async def enqueue_run(self, run: RunRecord, entry: QueuedRun) -> tuple[RunRecord, Enqueued]:
        if entry.debounce_key is not None:
            group = (entry.queue, entry.debounce_key)
            pending = self._debounced.get(group)
            if pending is not None and self._unstarted(pending):
                current = self._runs[pending]
                if current.workflow != run.workflow:
                    return current, Enqueued.EXISTS
                self._queued[pending] = replace(
                    self._queued[pending],
                    priority=entry.priority,
                    partition_key=entry.partition_key,
                    not_before=entry.not_before,
                    enqueued_at=entry.enqueued_at,
                )
                replaced = replace(
                    current, inputs=run.inputs, inputs_digest=run.inputs_digest, updated_at=run.updated_at
                )
                self._runs[pending] = replaced
                self.wake_queue_waiters(entry.queue)
                return replaced, Enqueued.REPLACED
        existing = self._runs.get(run.run_id)
        if existing is not None:
            return existing, Enqueued.EXISTS
        self._queued[run.run_id] = replace(entry, run_id=run.run_id, started_at=None)
        if entry.debounce_key is not None:
            self._debounced[(entry.queue, entry.debounce_key)] = run.run_id
        self._put(run)
        self._indexes.added(run)
        return run, Enqueued.CREATED

    def _unstarted(self, run_id: str) -> bool:
        run, entry = self._runs.get(run_id), self._queued.get(run_id)
        return (
            run is not None
            and entry is not None
            and run.status is RunStatus.PENDING
            and run.lease_token == 0
            and entry.started_at is None
        )

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
        clock = time.time()  # leases and rate windows are on the store's clock
        running, by_partition, candidates = 0, collections.Counter[str | None](), []
        for run_id in self._members.get(queue, ()):
            run, entry = self._runs[run_id], self._queued[run_id]
            if run.lease_is_live(clock):
                running += 1
                by_partition[entry.partition_key] += 1
            elif (
                entry.not_before <= now
                and is_due(run, now)
                and (workflows is None or run.workflow in workflows)
            ):
                candidates.append((entry.priority, entry.enqueued_at, run_id))
        candidates.sort()
        starts = self._recent_starts(queue, clock, limits.rate_limit[1] if limits.rate_limit else None)
        in_window = 0
        if limits.rate_limit is not None:
            in_window = _started_since(starts, clock - limits.rate_limit[1])
        claimed: list[tuple[RunRecord, Lease]] = []
        for _, _, run_id in candidates:
            if len(claimed) >= limit or (limits.concurrency is not None and running >= limits.concurrency):
                break
            entry = self._queued[run_id]
            partition = entry.partition_key
            full = limits.partition_concurrency
            if full is not None and by_partition[partition] >= full:
                continue  # this partition is full; another one's run may go
            first = entry.started_at is None
            if first and limits.rate_limit is not None and in_window >= limits.rate_limit[0]:
                continue  # no new start in this window; a run started before may resume
            lease = self._take(self._runs[run_id], owner, lease_seconds, clock)
            if first:
                self._queued[run_id] = replace(entry, started_at=clock)
                starts.append(clock)
                in_window += 1
                if entry.debounce_key is not None:
                    self._debounced.pop((queue, entry.debounce_key), None)
            running += 1
            by_partition[partition] += 1
            claimed.append((self._runs[run_id], lease))
        return claimed

    def _recent_starts(self, queue: str, clock: float, window: float | None) -> list[float]:
        if window is not None and window > self._horizon:
            self._horizon = window
        starts = self._starts.setdefault(queue, [])
        del starts[: bisect.bisect_right(starts, clock - self._horizon)]
        return starts

    async def get_queued(self, run_id: str) -> QueuedRun | None:
        return self._queued.get(run_id)

    async def queue_stats(self, queue: str, now: float, *, window: float | None = None) -> QueueStats:
        clock = time.time()
        queued = delayed = running = 0
        for run_id in self._members.get(queue, ()):
            run, entry = self._runs[run_id], self._queued[run_id]
            if run.lease_is_live(clock):
                running += 1
            elif entry.not_before > now and run.status is RunStatus.PENDING:
                delayed += 1
            elif is_due(run, now):
                queued += 1
        started = None
        if window is not None:
            started = _started_since(self._recent_starts(queue, clock, window), clock - window)
        return QueueStats(queue, queued=queued, delayed=delayed, running=running, started_in_window=started)

    async def list_queues(self) -> list[str]:
        return sorted(queue for queue, members in self._members.items() if members)

    async def wait_for_queues(self, queues: Collection[str], timeout: float) -> None:
        # A delayed run becomes claimable with no write to announce it: wake at its time.
        wall = time.time()
        ahead = [
            entry.not_before - wall
            for queue in queues
            for entry in map(self._queued.__getitem__, self._members.get(queue, ()))
            if entry.not_before > wall
        ]
        await super().wait_for_queues(queues, min([timeout, *ahead]))

    # -- events and streams ------------------------------------------------------

    async def set_event(self, lease: Lease, key: str, value: str) -> None:
        self._fenced(lease)
        self._outputs.setdefault(lease.run_id, RunOutputs()).events[key] = value
        self.wake_output_waiters(lease.run_id)

    async def get_events(self, run_id: str) -> dict[str, str]:
        outputs = self._outputs.get(run_id)
        return {} if outputs is None else dict(outputs.events)

    async def append_stream(
        self, lease: Lease, key: str, value: str, *, write_id: str | None = None
    ) -> int | None:
        self._fenced(lease)
        offset = self._outputs.setdefault(lease.run_id, RunOutputs()).append(key, value, write_id)
        self.wake_output_waiters(lease.run_id)
        return offset

    async def close_stream(self, lease: Lease, key: str) -> None:
        self._fenced(lease)
        self._outputs.setdefault(lease.run_id, RunOutputs()).close(key)
        self.wake_output_waiters(lease.run_id)

    async def read_stream(self, run_id: str, key: str, offset: int, limit: int = 1000) -> StreamItems:
        outputs = self._outputs.get(run_id)
        return StreamItems([], False) if outputs is None else outputs.read(key, offset, limit)

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]]:
        outputs = self._outputs.get(run_id)
        return {} if outputs is None else outputs.listed()

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        return sorted(self._steps.get(run_id, {}).values(), key=lambda step: step.finished_at)

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        self._fenced(lease)
        steps = self._steps.setdefault(lease.run_id, {})
        existing = steps.get(step.key)
        if existing is not None and existing.status is StepStatus.COMPLETED:
            return existing
        steps[step.key] = step
        return step

    # -- signals -----------------------------------------------------------------

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        deliveries = self._signals.setdefault(run_id, [])
        if any(s.name == name and s.delivery_id == delivery_id for s in deliveries):
            return False
        self._seq += 1
        now = time.time()
        deliveries.append(SignalRecord(run_id, name, delivery_id, payload, self._seq, now))
        run = self._runs.get(run_id)
        if run is not None and run.status is RunStatus.WAITING:
            self._put(replace(run, wake_at=now, updated_at=now))
        self.wake_local_waiters(run_id, name)
        return True

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        return [s for s in self._signals.get(run_id, ()) if name is None or s.name == name]


def _started_since(starts: list[float], since: float) -> int:
    """How many of ``starts`` (ascending) are after ``since``: a window's count in O(log n), so a
    busy queue's rate checks do not walk the hour of starts the store keeps."""
    return len(starts) - bisect.bisect_right(starts, since)


@hookimpl
def durable_store_backends() -> list[StoreBackend]:
    return [
        StoreBackend(
            name="memory",
            schemes=("memory",),
            description="In-process memory; for tests and examples, gone at exit.",
            store_class=InMemoryStore,
            install_hint="pip install python-durable",  # part of the base package, no extra
            capabilities=InMemoryStore.capabilities,
        )
    ]


@hookimpl
def durable_store_from_url(url: str, options: dict[str, Any]) -> Store | None:
    if not url.lower().startswith("memory:"):
        return None
    return InMemoryStore(**options)
