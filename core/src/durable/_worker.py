"""Workers: resume runs that are due (pending, interrupted, woken) from the store alone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from durable import _clock, _runner
from durable._dispatch import Dispatch
from durable._records import Lease, RunRecord, RunStatus
from durable.errors import ConfigurationError, PluginError, RunParked
from durable.store import Store, accepts_workflows

if TYPE_CHECKING:
    from durable._executor import Executor
    from durable.workflow import Workflow

log = logging.getLogger("durable.worker")

FOREIGN_CHECK_SECONDS = 60.0
"""How often a worker looks for due runs of workflows its code lacks, to report them."""
FOREIGN_CHECK_LIMIT = 100


class Worker:
    """Polls the store for due runs and executes them, ``concurrency`` at a time.

    Any number of workers, in any processes on any hosts, may share a store: a run
    is executed only by the worker that claims its lease. ``queues`` names the queues it serves
    (``durable._dispatch``; all by default); it also starts their schedules' ticks.
    """

    def __init__(
        self,
        wf: Workflow,
        *,
        concurrency: int = 16,
        poll_interval: float = 0.5,
        queues: Iterable[str] | None = None,
    ) -> None:
        if concurrency < 1 or poll_interval <= 0:
            raise ValueError(
                f"Worker: concurrency must be >= 1 and poll_interval > 0 ({concurrency}, {poll_interval})"
            )
        self.wf = wf
        self.executor: Executor = wf.executor
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.unknown_runs: dict[str, str] = {}
        """Run id -> workflow name, for due runs of workflows this code does not define."""
        self.corrupt_runs: set[str] = set()
        """Runs whose stored record cannot be read: skipped (``durable runs check`` lists them)."""
        self.resumed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._next_foreign_check = 0.0
        self.dispatch = Dispatch(wf, queues)
        self._store: Store | None = None
        self._queue_of: dict[asyncio.Task[None], str] = {}

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Work until ``stop`` is set (or forever); running runs are interrupted on exit and
        stay resumable by any other worker."""
        stop = stop or asyncio.Event()
        outage = _Outage(self)
        scheduler = None
        if self.dispatch.scheduled:
            from durable._schedules import Scheduler

            scheduler = asyncio.ensure_future(Scheduler(self.dispatch.scheduled).run(stop))
        try:
            while not stop.is_set():
                try:
                    await self.poll_once()
                except (ConfigurationError, PluginError):
                    raise  # only a configuration error ends a worker
                except Exception as exc:
                    wait = outage.failed(exc)
                else:
                    outage.over()
                    wait = self.poll_interval
                self._slot_freed.clear()
                waiters: list[asyncio.Future[object]] = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._slot_freed.wait()),
                ]
                if _clock.virtual is not None:  # virtual time jumped: a parked run may be due
                    waiters.append(asyncio.ensure_future(_clock.advanced()))
                if self._store is not None:  # pushed: an enqueued run or a freed slot wakes it
                    woken = self._store.wait_for_queues(self.dispatch.names, wait)
                    waiters.append(asyncio.ensure_future(woken))
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            if scheduler is not None:
                scheduler.cancel()
                await asyncio.gather(scheduler, return_exceptions=True)
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def poll_once(self) -> int:
        """Claim and start due runs up to the free capacity; returns how many were started."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        ex = self.executor
        store = self._store = await ex.store()
        started = 0
        now = _clock.now()  # workflow time: a parked run's wake time is on it
        sent = time.monotonic()
        for queued, taken, queue in await self.dispatch.claim(store, now, free, ex.owner, ex.lease_seconds):
            self._start(queued, taken, sent, queue)
            started += 1
        free -= started
        # Ask for as many more as corrupt runs were skipped, or they would fill every poll.
        wanted = free + len(self.corrupt_runs)
        due: list[RunRecord] = []
        if accepts_workflows(store):
            if free > 0 and self.dispatch.unqueued:
                due = await store.due_runs(now, limit=wanted, workflows=self.dispatch.unqueued)
            if time.monotonic() >= self._next_foreign_check:
                await self._report_foreign(store, now)
        elif free > 0:
            due = await store.due_runs(now, limit=wanted + free)
        free += started
        for run in due:
            if started >= free:
                break
            if run.status is RunStatus.CORRUPT:
                self.corrupt_runs.add(run.run_id)
                continue
            self.corrupt_runs.discard(run.run_id)  # repaired by an operator
            if run.workflow not in ex.workflows:
                self._unknown(run)
                continue
            if run.workflow not in self.dispatch.unqueued:
                continue  # a workflow of a queue this worker does not serve
            sent = time.monotonic()
            lease = await store.claim_run(run.run_id, ex.owner, ex.lease_seconds)
            if lease is None:
                continue  # another worker was faster
            claimed = await store.get_run(run.run_id)
            if claimed is not None and claimed.status is RunStatus.CORRUPT:
                # Damaged since the poll read it: give it back untouched, and skip it from now on.
                self.corrupt_runs.add(run.run_id)
                await _runner.give_back(store, lease)
                continue
            self._start(claimed or run, lease, sent)
            started += 1
        return started

    def _start(self, run: RunRecord, lease: Lease, sent: float, queue: str | None = None) -> None:
        task = asyncio.ensure_future(self._execute(run, lease, sent))
        self._tasks.add(task)
        if queue is not None:
            self._queue_of[task] = queue
        task.add_done_callback(self._done)

    async def _report_foreign(self, store: Store, now: float) -> None:
        """Report due runs of workflows this code lacks: on the first poll, then every
        ``FOREIGN_CHECK_SECONDS`` (polls themselves ask only for this code's workflows)."""
        self._next_foreign_check = time.monotonic() + FOREIGN_CHECK_SECONDS
        for run in await store.due_runs(now, limit=FOREIGN_CHECK_LIMIT):
            if run.workflow not in self.executor.workflows:
                self._unknown(run)

    def _unknown(self, run: RunRecord) -> None:
        if run.run_id not in self.unknown_runs:
            self.unknown_runs[run.run_id] = run.workflow
            log.warning(
                "run %r is due but its workflow %r is not defined in this code; left for a worker "
                "that defines it",
                run.run_id,
                run.workflow,
            )

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.dispatch.finished(self._queue_of.pop(task, None))
        self._slot_freed.set()

    async def _execute(self, run: RunRecord, lease: Lease, leased_at: float) -> None:
        self.resumed += 1
        try:
            await _runner.resume_claimed(self.executor, run, lease, parkable=True, leased_at=leased_at)
        except RunParked:
            pass
        except Exception as exc:
            # The outcome is recorded in the store; the worker carries on with other runs. (`durable
            # worker` logs each run's outcome at INFO through the observer hooks: _worker_log.)
            log.debug("run %r ended with %s: %s", run.run_id, type(exc).__name__, exc)


class _Outage:
    """A worker's view of its store failing: logged when it starts and when it ends, polls backed
    off meanwhile (doubling from the poll interval to ``MAX_BACKOFF``), however long it lasts."""

    MAX_BACKOFF = 5.0

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.failures = 0
        self.since = 0.0

    def failed(self, exc: Exception) -> float:
        """Record a failed poll; returns how long to wait before the next one."""
        if self.failures == 0:
            self.since = time.monotonic()
            log.warning(
                "worker %s: polling the store failed (%s: %s); retrying with backoff until it answers",
                self.worker.executor.owner,
                type(exc).__name__,
                exc,
            )
        else:
            log.debug(
                "worker %s: poll %d of the outage failed: %r", self.worker.executor.owner, self.failures, exc
            )
        self.failures += 1
        backoff = self.worker.poll_interval * 2.0**self.failures
        return min(backoff, max(self.MAX_BACKOFF, self.worker.poll_interval))

    def over(self) -> None:
        if self.failures:
            log.warning(
                "worker %s: the store answers again after %.1f s (%d failed polls)",
                self.worker.executor.owner,
                time.monotonic() - self.since,
                self.failures,
            )
            self.failures = 0
