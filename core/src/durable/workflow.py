"""``Workflow``: the decorators users write (``@wf.task``, ``@wf.workflow``) and the run API."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, Self, TypeVar, overload

from durable import _codec, _keys, _queues, _runner, _sync, _waits
from durable._engine import StepPolicy, observe
from durable._executor import Executor
from durable._lifecycle import Actor, reported, require
from durable._owner import is_dead_local_owner, new_owner_id
from durable._plugins import PluginManager, as_store_url, get_plugin_manager
from durable._queues import Queue
from durable._records import (
    Lease,
    QueuedRun,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
)
from durable._task_function import TaskFunction
from durable._versions import check_version
from durable._worker import Worker
from durable._workflow_function import WorkflowFunction
from durable.backoff import BackoffStrategy, exponential
from durable.context import RunContext, _current, current_run
from durable.errors import (
    ConfigurationError,
    RunCancelled,
    SerializationError,
    StoreUnavailable,
    UnknownRunError,
)
from durable.store import Capability, Store, redact_url

if TYPE_CHECKING:
    from durable._replay import ReplayReport

__all__ = ["TaskFunction", "Workflow", "WorkflowFunction"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Workflow:
    """A durable application: its store, its tasks and its workflows.

    ``db`` is a ``Store``, a store URL (``sqlite:///app.db``, ``memory://``,
    ``redis://...``, ``postgresql://...``) or a bare path, which means SQLite.
    """

    def __init__(
        self,
        name: str,
        db: str | os.PathLike[str] | Store = "durable.db",
        default_retries: int = 3,
        default_backoff: BackoffStrategy | None = None,
        *,
        lease_seconds: float = 15.0,
        version: str | None = None,
        max_threads: int | None = None,
    ) -> None:
        """``version`` (optional) names this code's release; each run it executes records it
        (``durable._versions``). ``max_threads`` bounds the thread pool that plain ``def`` tasks
        run in (default: ``min(32, CPUs + 4)``, as ``ThreadPoolExecutor``'s)."""
        if not name or not isinstance(name, str):
            raise ConfigurationError(f"Workflow name must be a non-empty str, got {name!r}")
        _check_retries(default_retries, f"Workflow({name!r})")
        if lease_seconds <= 0:
            raise ConfigurationError(f"Workflow({name!r}): lease_seconds must be > 0, got {lease_seconds}")
        self.name = name
        self.version = check_version(version, f"Workflow({name!r})")
        self.default_retries = default_retries
        self.default_backoff = default_backoff if default_backoff is not None else exponential()
        self.plugins: PluginManager = get_plugin_manager()
        self.threads = _sync.Threads(_sync.default_threads() if max_threads is None else max_threads, name)
        """The pool plain ``def`` tasks run in."""
        self._portal = _sync.Portal(name, self.close)
        self._workflows: dict[str, WorkflowFunction[Any, Any]] = {}
        self.executor = Executor(
            self, self.get_store, new_owner_id(), lease_seconds, self._workflows, self.plugins
        )
        """What the runner and workers use to execute this application's runs."""
        self._active: dict[str, RunContext] = self.executor.active
        self._store: Store | None = None
        self._store_url: str | None = None
        self._opened_on: asyncio.AbstractEventLoop | None = None
        self.use_store(db)
        self._open_lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def owner(self) -> str:
        """The identity this Workflow's executions take leases under."""
        return self.executor.owner

    @property
    def lease_seconds(self) -> float:
        return self.executor.lease_seconds

    @lease_seconds.setter
    def lease_seconds(self, seconds: float) -> None:
        self.executor.lease_seconds = seconds

    # -- decorators --------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> TaskFunction[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def task(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        backoff: BackoffStrategy | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        timeout: float | None = None,
    ) -> _TaskDecorator: ...

    def task(
        self,
        fn: Callable[P, Awaitable[R]] | Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retries: int | None = None,
        backoff: BackoffStrategy | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        timeout: float | None = None,
    ) -> TaskFunction[P, R] | _TaskDecorator:
        """Make a function a checkpointed step (``@wf.task`` or ``@wf.task(...)``): an ``async
        def``, or a plain ``def``, which runs in the Workflow's thread pool (``max_threads``).

        ``retries`` extra attempts (so ``retries + 1`` in all) wait ``backoff(k)``
        seconds before retry ``k``; only exceptions matching ``retry_on`` are retried;
        ``timeout`` limits each attempt (for a ``def``, the wait for its thread: see ``durable._sync``).
        """

        def decorate(f: Callable[P, Any]) -> TaskFunction[P, Any]:
            task_name = f.__name__ if name is None else name
            n = self.default_retries if retries is None else retries
            _check_retries(n, f"task {task_name!r}")
            if timeout is not None and timeout <= 0:
                raise ConfigurationError(f"task {task_name!r}: timeout must be > 0, got {timeout}")
            policy = StepPolicy(
                retries=n,
                backoff=backoff if backoff is not None else self.default_backoff,
                retry_on=(retry_on,) if isinstance(retry_on, type) else retry_on,
                timeout=timeout,
            )
            return TaskFunction(self, f, task_name, policy)

        return decorate(fn) if fn is not None else decorate  # type: ignore[return-value]

    @overload
    def workflow(self, fn: Callable[P, Awaitable[R]], /) -> WorkflowFunction[P, R]: ...
    @overload
    def workflow(
        self,
        fn: None = None,
        /,
        *,
        id: str | None = None,
        name: str | None = None,
        timeout: float | None = None,
        queue: str | Queue | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        catch_up: int = 1,
    ) -> Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]: ...

    def workflow(
        self,
        fn: Callable[P, Awaitable[R]] | None = None,
        /,
        *,
        id: str | None = None,
        name: str | None = None,
        timeout: float | None = None,
        queue: str | Queue | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        catch_up: int = 1,
    ) -> WorkflowFunction[P, R] | Callable[[Callable[P, Awaitable[R]]], WorkflowFunction[P, R]]:
        """Mark the entry point of a durable run; ``id`` is a template over its parameters.

        ``timeout`` is the run's deadline in seconds from its creation, stored with the
        run and enforced across restarts (the run fails with ``RunTimeout``). ``queue`` (a
        ``wf.queue`` or its name): started runs wait for that queue's limits. ``schedule`` (cron,
        in ``timezone``, UTC by default): workers start one run per tick, passing its time as
        the ``scheduled_at`` parameter; ``catch_up`` missed ticks at most are started after a
        downtime (``durable._schedules``).
        """

        def decorate(f: Callable[P, Awaitable[R]]) -> WorkflowFunction[P, R]:
            wf_name = f.__name__ if name is None else name
            if wf_name in self._workflows and self._workflows[wf_name].fn is not f:
                other = self._workflows[wf_name].fn
                raise ConfigurationError(
                    f"workflow name {wf_name!r} is used by both {other.__module__}.{other.__qualname__} "
                    f"and {f.__module__}.{f.__qualname__}; pass name=... to tell them apart"
                )
            wrapped = WorkflowFunction(self, f, wf_name, id, timeout)
            wrapped.queue = _queues.resolve(self, queue, wf_name)
            if schedule is not None or timezone is not None:
                from durable._schedules import make_schedule

                wrapped.schedule = make_schedule(wrapped, schedule, timezone, catch_up)
            self._workflows[wf_name] = wrapped
            return wrapped

        return decorate(fn) if fn is not None else decorate

    # -- store -------------------------------------------------------------------

    async def get_store(self) -> Store:
        """The opened store (opened on first use)."""
        replay = _current.get()
        if replay is not None and replay.replay_only and replay.executor.workflow is self:
            # A replay check's body (``durable._replay``) reads the store it checks, read-only.
            return replay.store
        loop = asyncio.get_running_loop()
        if self._store is not None and self._opened_on is loop:
            return self._store
        if self._open_lock is None or self._lock_loop is not loop:
            self._open_lock, self._lock_loop = asyncio.Lock(), loop
        async with self._open_lock:
            if self._opened_on is not loop:
                if self._store_url is not None and self._opened_on is not None and self._store_loop_bound():
                    # A URL store opened on an event loop that is gone cannot be reused
                    # (pools and listeners belong to their loop): open a fresh one.
                    self._store = None
                if self._store is None:
                    assert self._store_url is not None
                    self._store = self.plugins.store_from_url(self._store_url)
                await self._store.open()
                self._opened_on = loop
            store = self._store
        if store is None:
            raise StoreUnavailable(f"{self!r} was closed while its store was being opened")
        return store

    def use_store(self, db: str | os.PathLike[str] | Store) -> None:
        """Point this Workflow at another store before it is opened (``durable worker --store``)."""
        if self._opened_on is not None:
            raise ConfigurationError(f"{self!r}: use_store() must be called before the store is opened")
        if isinstance(db, Store) and type(db)._legacy_api:
            # A store written for python-durable 0.2 (its seven methods): adapted, with a warning.
            from durable._legacy_store import LegacyStoreAdapter

            db = LegacyStoreAdapter(db, stacklevel=3 if inspect.stack(0)[1].function == "__init__" else 2)
        self._store = db if isinstance(db, Store) else None
        self._store_url = None if isinstance(db, Store) else as_store_url(db)
        if _queues.queues_of(self):
            _queues.require_queues(self, f"{self!r}, which declares queues,")

    def _store_loop_bound(self) -> bool:
        return self._store is None or type(self._store).loop_bound

    async def close(self) -> None:
        """Close the store. The workflow may be used again: the store reopens on demand."""
        if self._store is not None and self._opened_on is not None:
            await self._store.close()
        self._opened_on = None
        if self._store_url is not None and self._store_loop_bound():
            self._store = None
        self.threads.shutdown()

    # -- synchronous callers -------------------------------------------------------

    def run_sync(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` (``my_workflow(...)``, ``wf.wait_for(run_id)``, ``wf.complete(...)``)
        from synchronous code (Django, Flask, a script) and return its result.

        It runs on an event loop of this Workflow's own, in a daemon thread started on first use
        and shared by every thread calling ``run_sync``: the store stays open between calls.
        ``close_sync()`` (or the end of the process) closes the store and ends that thread. Refused
        inside a running event loop (await instead) and inside a run. Use one Workflow object either
        from async code or through ``run_sync``, not both at once.
        """
        inside = current_run()
        if inside is not None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise ConfigurationError(
                f"{self!r}.run_sync() was called inside run {inside.run_id!r} (from a sync task?): "
                "call workflows from the workflow body instead",
                run_id=inside.run_id,
            )
        return self._portal.run(awaitable, f"{self!r}.run_sync()")

    def close_sync(self) -> None:
        """Close the store on ``run_sync``'s event loop and end its thread (it restarts on the
        next ``run_sync``). Runs still executing there are interrupted."""
        self._portal.stop()

    async def __aenter__(self) -> Self:
        await self.get_store()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- waits -------------------------------------------------------------------

    async def signal(self, name: str, *, timeout: float | None = None, poll: float | None = None) -> Any:
        """Wait durably for the next delivery of signal ``name`` to this run.

        The n-th wait on a name receives the n-th delivery. A delivered payload is
        checkpointed, so a replay returns it at once. Raises ``SignalTimeout`` after
        ``timeout`` seconds (and again on replay: the timeout is part of the journal).
        In a run executed by a worker, a wait without timeout releases the process.

        ``poll`` (seconds) is accepted for code written for python-durable 0.2, where it set how
        often the store was read, and is ignored: a delivery wakes the wait at once (stores with
        the ``notify`` capability push it; the others are re-read at most ``store.poll_interval``
        seconds apart, and at once for a delivery made in this process).
        """
        return await _waits.wait_for_signal(name, timeout)

    async def sleep(self, seconds: float) -> None:
        """Sleep durably: the wake time is checkpointed, so a crash does not extend it.

        In a run executed by a worker, a sleep longer than a second releases the process
        and any worker resumes the run when it is due.
        """
        await _waits.sleep(seconds)

    async def sleep_until(self, when: float | datetime) -> None:
        """``sleep`` until an absolute time (epoch seconds or an aware ``datetime``)."""
        await _waits.sleep_until(when)

    async def patched(self, name: str) -> bool:
        """Whether this run takes the new code of patch ``name``: ``True`` in a run reaching this
        point for the first time (recorded) or that recorded it before, ``False`` in a run the old
        code already took past this point (``durable._patches``). ``if await wf.patched("x"):``.
        """
        from durable._patches import patched

        return await patched(name)

    def deprecate_patch(self, name: str) -> None:
        """Where ``if await wf.patched(name):`` was, once no run that took the old branch remains:
        the new code always runs, and runs that recorded the patch still replay."""
        from durable._patches import deprecate_patch

        deprecate_patch(name)

    async def complete(
        self,
        run_id: str,
        name: str,
        payload: Any = None,
        *,
        delivery_id: str = "",
        create: bool = False,
    ) -> bool:
        """Deliver signal ``name`` with ``payload`` to run ``run_id``.

        Returns ``False`` if a delivery with the same ``delivery_id`` was made before
        (so a retried webhook delivers once). Use distinct delivery ids to send one
        name several times. The run need not exist yet: a delivery that beats the
        run's start (a fast webhook) is kept, and the run receives it when it waits.
        ``create`` is accepted for older callers and no longer needed; ``durable signal``
        on the command line still refuses an unknown run unless ``--create``.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"run {run_id!r}: signal name must be a non-empty str, got {name!r}")
        for text, what in ((run_id, "run id"), (name, "signal name"), (delivery_id, "delivery id")):
            _keys.check_id(text, f"wf.complete(): {what}")
        store = await self.get_store()
        try:
            text = _codec.dumps(payload)
        except Exception as exc:
            raise SerializationError(
                f"run {run_id!r} signal {name!r}: payload cannot be stored: {exc}"
            ) from exc
        recorded = await store.send_signal(run_id, name, delivery_id, text)
        observe(
            self.plugins,
            "durable_signal_delivered",
            run_id=run_id,
            name=name,
            delivery_id=delivery_id,
            recorded=recorded,
        )
        return recorded

    # -- events and streams (durable._streams; docs/STREAMS.md) ---------------------

    async def set_event(self, key: str, value: Any) -> None:
        """Set this run's event ``key`` to ``value`` (its latest value; ``get_event`` reads it from
        anywhere). In the workflow body it is checkpointed, so a replay does not set it again; in a
        task body it is set each time the task executes. Needs a ``streams`` store."""
        from durable import _streams

        await _streams.set_event(key, value)

    async def get_event(
        self, run_id: str, key: str, *, timeout: float | None = None, default: Any = None
    ) -> Any:
        """The latest value of event ``key`` of run ``run_id``; if it has none yet, wait for a
        first one up to ``timeout`` seconds (``None``: as long as the run may set it). Returns
        ``default`` on timeout or once the run finished without setting it. ``UnknownRunError``
        for no such run."""
        from durable import _streams

        return await _streams.get_event(await self.get_store(), run_id, key, timeout, default)

    async def get_events(self, run_id: str) -> dict[str, Any]:
        """Every event of run ``run_id``: key -> latest value (``{}`` if none)."""
        from durable import _streams

        return await _streams.get_events(await self.get_store(), run_id)

    async def write_stream(self, key: str, value: Any) -> int:
        """Append ``value`` to this run's stream ``key``; returns its offset (0, 1, 2, ...). In the
        workflow body each write happens exactly once per run (checkpointed like a step: a replay
        does not append again); in a task body it happens at least once (again if the task is
        retried or re-executed after a crash). A closed stream refuses (``ConfigurationError``)."""
        from durable import _streams

        return await _streams.write_stream(key, value)

    async def close_stream(self, key: str) -> None:
        """Close this run's stream ``key``: its readers end after its last item."""
        from durable import _streams

        await _streams.close_stream(key)

    async def read_stream(
        self, run_id: str, key: str, *, offset: int = 0, timeout: float | None = None
    ) -> AsyncIterator[tuple[int, Any]]:
        """``(offset, value)`` of each item of run ``run_id``'s stream ``key`` from ``offset`` on,
        live: new items arrive as they are written (the store's notifications push them). Resume
        after a dropped connection with ``offset=last + 1``. Ends when the stream is closed, the
        run finished (after its last item), or no item came for ``timeout`` seconds.
        ``UnknownRunError`` for no such run."""
        from durable import _streams

        async for item in _streams.read_stream(await self.get_store(), run_id, key, offset, timeout):
            yield item

    # -- inspection and control --------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run as it stands, ``interrupted`` where its executor is gone; ``None`` if unknown."""
        run = await (await self.get_store()).get_run(run_id)
        return None if run is None else reported(run)

    async def list_runs(self, query: RunQuery | None = None, **filters: Any) -> list[RunRecord]:
        """Runs, newest first; pass a ``RunQuery`` or its fields as keywords.

        Statuses are as ``get_run`` reports them: ``statuses={RunStatus.INTERRUPTED}`` finds runs
        whose executor is gone, and ``running`` only runs with a live owner. ``version="x"`` keeps
        runs created by code of version ``x`` (``RunRecord.version``).
        """
        from durable._inspect import list_reported

        return await list_reported(await self.get_store(), query or RunQuery(**filters))

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        return await (await self.get_store()).load_steps(run_id)

    async def get_signals(self, run_id: str) -> list[SignalRecord]:
        return await (await self.get_store()).list_signals(run_id)

    async def prune(self, older_than: float | timedelta) -> int:
        """Delete finished runs (completed, failed, cancelled) with their steps and signals
        when last updated more than ``older_than`` (seconds or a ``timedelta``) ago.

        Returns how many runs were deleted. Runs that may still execute are never deleted.
        """
        import time

        from durable._inspect import prune

        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else float(older_than)
        if not seconds >= 0:
            raise ConfigurationError(f"prune(older_than={older_than!r}): must be >= 0")
        return await prune(await self.get_store(), time.time() - seconds)

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run and its child runs; returns the run after the change (as ``get_run``).

        A run nobody executes (pending, waiting, parked, sleeping, interrupted, failed, or whose
        owner's process on this host is gone) is ``cancelled`` at once. A run executing in this
        process stops at its next await; one executing elsewhere stops when its owner next renews
        its lease (within a third of ``lease_seconds``). ``resume()`` continues it.
        """
        store = await self.get_store()
        run = await store.get_run(run_id)
        if run is None:
            raise UnknownRunError(f"cannot cancel: no run {run_id!r} in {store!r}", run_id=run_id)
        if run.status.is_final:
            return run  # completed or cancelled already: nothing to stop, nothing to flag
        if run.owner is not None and run.lease_is_live(time.time()) and is_dead_local_owner(run.owner):
            # Its executor is gone: nobody would see the request; take the lease back first.
            await _runner.give_back(store, Lease(run_id, run.owner, run.lease_token, 0.0))
        # Children first: a parent stopped first would interrupt them instead of cancelling them.
        for child in await store.list_runs(RunQuery(id_prefix=run_id + "/", limit=10_000)):
            if child.parent_run_id == run_id and not child.status.is_final:
                await self.cancel(child.run_id)
        before = await store.get_run(run_id)
        after = await store.request_cancel(run_id)
        if after is None or before is None:
            raise UnknownRunError(f"cannot cancel: run {run_id!r} was deleted meanwhile", run_id=run_id)
        if after.status is not before.status:
            require(run_id, before.status, after.status, Actor.CALLER)
        local = self._active.get(run_id)
        if local is not None:
            local.stop(RunCancelled(f"run {run_id!r} was cancelled", run_id=run_id))
        return reported(after)

    async def resume(self, run_id: str) -> Any:
        """Continue a run from its journal, in this process, and return its result.

        A failed or cancelled run is made pending again first; an interrupted, pending or
        waiting run is claimed as it is; a completed run returns its result. Raises before
        changing anything if this code does not define the run's workflow.
        """
        store = await self.get_store()
        run = await store.get_run(run_id)
        if run is None:
            raise UnknownRunError(f"cannot resume: no run {run_id!r} in {store!r}", run_id=run_id)
        wfn = self.executor.workflow_of(run_id, run.workflow)
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            require(run_id, run.status, RunStatus.PENDING, Actor.CALLER)
            reset = await store.reset_run(run_id)
            if reset is None:
                raise UnknownRunError(f"cannot resume: run {run_id!r} was deleted meanwhile", run_id=run_id)
            run = reset
        sent = time.monotonic()
        claimed = await _runner.claim_or_wait(self.executor, store, run, wait=True, timeout=None)
        if isinstance(claimed, RunRecord):
            return _runner.outcome(claimed, wfn)
        latest = await store.get_run(run_id)
        return await _runner.resume_claimed(
            self.executor, latest or run, claimed, parkable=False, leased_at=sent
        )

    async def fork(self, run_id: str, *, from_step: str, new_run_id: str | None = None) -> str:
        """A new run of ``run_id``'s workflow with its inputs, whose journal holds the original's
        steps before ``from_step`` (in journal order); returns its id. The original is untouched.

        The fork is due at once: a worker executes it from ``from_step`` (or ``wf.resume(id)``
        here, ``wf.wait_for(id)`` for its result). Its ``durable:fork`` step records its origin.
        """
        from durable._fork import fork

        store = await self.get_store()
        forked = await fork(
            store,
            run_id,
            from_step=from_step,
            new_run_id=new_run_id,
            owner=self.owner,
            lease_seconds=self.lease_seconds,
            plugins=self.plugins,
        )
        return forked.run_id

    async def check_replay(
        self,
        runs: Iterable[str] | None = None,
        *,
        workflow: str | None = None,
        statuses: Iterable[RunStatus | str] | None = None,
        store: str | os.PathLike[str] | Store | None = None,
    ) -> ReplayReport:
        """Replay recorded runs against this code, executing nothing and writing nothing.

        Every recorded step, signal, sleep, patch and child returns its recorded value; a run
        stops at the first step its journal lacks. ``runs`` names runs; otherwise those of
        ``workflow`` (or all) whose status is in ``statuses`` (default: pending, running,
        waiting, interrupted, failed). ``store`` (a URL, path or ``Store``) defaults to this
        Workflow's. ``report.ok`` is false when a run's journal disagrees with the code;
        ``report.incompatible`` names each run and step (``durable replay`` on the command line).
        """
        from durable._replay import check_replay

        return await check_replay(self, runs, workflow=workflow, statuses=statuses, store=store)

    async def wait_for(self, run_id: str, *, timeout: float | None = None) -> Any:
        """Wait for a run executed elsewhere (a worker) and return its result.

        Raises ``RunFailed`` or ``RunCancelled`` for those outcomes, ``WaitTimeout`` (a
        ``TimeoutError``) after ``timeout`` seconds, saying when no worker has taken the run.
        """
        return await _runner.wait_for_outcome(self.executor, run_id, timeout)

    # -- workers -----------------------------------------------------------------

    def worker(
        self, *, concurrency: int = 16, poll_interval: float = 0.5, queues: Iterable[str] | None = None
    ) -> Worker:
        """A worker that resumes due runs of this Workflow's workflows (see ``Worker``), from
        ``queues`` (names; every queue this code declares and ``default`` by default)."""
        return Worker(self, concurrency=concurrency, poll_interval=poll_interval, queues=queues)

    async def run_worker(
        self,
        *,
        concurrency: int = 16,
        poll_interval: float = 0.5,
        stop: asyncio.Event | None = None,
        queues: Iterable[str] | None = None,
    ) -> None:
        """Work as a worker until ``stop`` is set (or the task is cancelled)."""
        await self.worker(concurrency=concurrency, poll_interval=poll_interval, queues=queues).run(stop)

    # -- queues ------------------------------------------------------------------

    def queue(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        rate_limit: tuple[int, float] | None = None,
        partition_concurrency: int | None = None,
    ) -> Queue:
        """Declare a named queue (``@wf.workflow(queue=name)`` puts a workflow on it): at most
        ``concurrency`` of its runs execute at once across every process, ``worker_concurrency``
        in one worker, ``rate_limit=(n, seconds)`` start in any window, ``partition_concurrency``
        at once per ``partition_key``. Needs a store with the ``queues`` capability
        (docs/QUEUES.md); ``wf.queue("default", ...)`` takes every workflow without ``queue=``."""
        return _queues.declare(
            self,
            name,
            concurrency=concurrency,
            worker_concurrency=worker_concurrency,
            rate_limit=rate_limit,
            partition_concurrency=partition_concurrency,
        )

    async def get_queued(self, run_id: str) -> QueuedRun | None:
        """The run's place in its queue (queue, priority, partition, not-before time, first
        start), or ``None`` for a run on no queue."""
        store = await self.get_store()
        if Capability.QUEUES not in store.capabilities:
            return None
        return await store.get_queued(run_id)

    def __repr__(self) -> str:
        store = self._store if self._store_url is None else redact_url(self._store_url)
        return f"<Workflow {self.name!r} store={store!r}>"


class _TaskDecorator(Protocol):
    """What ``@wf.task(...)`` returns: takes an ``async def`` or a plain ``def``."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> TaskFunction[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R], /) -> TaskFunction[P, R]: ...


def _check_retries(retries: object, where: str) -> None:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigurationError(f"{where}: retries must be an int >= 0 (extra attempts), got {retries!r}")
