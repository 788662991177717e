"""Crash injection: a run stops at a step's checkpoint as if its process died there."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from durable._plugins import get_plugin_manager
from durable.context import RunContext, current_run
from durable.errors import ConfigurationError
from durable.hookspecs import hookimpl
from durable.store import Lease, StepRecord, Store
from durable.workflow import TaskFunction, WorkflowFunction

SAVE_STEP = "save_step"


class SimulatedCrash(BaseException):
    """The process "died" at a crash point (``crash_after``/``crash_before``).

    A ``BaseException``, as the end of a process is not an error code can handle: nothing of the
    run is written after it (no status, no outcome), and its lease is given back as a peer on
    this host does for a dead owner, so the run reads ``interrupted`` and resumes at once.
    """

    def __init__(self, run_id: str, step_key: str, when: str) -> None:
        super().__init__(f"simulated crash of run {run_id!r} {when} the checkpoint of step {step_key!r}")
        self.run_id = run_id
        self.step_key = step_key


@dataclass(eq=False)
class CrashPoint:
    """An armed crash point; ``crashes`` lists the ``(run_id, step_key)`` it stopped."""

    target: str
    by_task: bool
    after: bool
    times: int
    crashes: list[tuple[str, str]] = field(default_factory=list)
    _pending: dict[tuple[str, str], RunContext] = field(default_factory=dict)
    _stores: list[Store] = field(default_factory=list)

    def matches(self, key: str, task: str) -> bool:
        if len(self.crashes) + len(self._pending) >= self.times:
            return False
        return task == self.target if self.by_task else key == self.target

    @hookimpl
    def durable_step_started(self, run_id: str, key: str, task: str, attempt: int) -> None:
        # Called in the run's task before the step's body: find its store, and catch its checkpoint.
        if (run_id, key) in self._pending or not self.matches(key, task):
            return
        ctx = current_run()
        if ctx is None or ctx.run_id != run_id:
            return
        self._pending[(run_id, key)] = ctx
        _CrashingSave.install(ctx.store, self)

    async def checkpoint(self, save: Callable[[], Awaitable[StepRecord]], step: StepRecord) -> StepRecord:
        """The run's ``save_step`` of ``step``: saved, or not, then the crash."""
        ctx = self._pending.pop((step.run_id, step.key), None)
        if ctx is None:
            return await save()
        if self.after:
            await save()
        self.crashes.append((step.run_id, step.key))
        await _die(ctx)
        raise SimulatedCrash(step.run_id, step.key, "after" if self.after else "before")


class _CrashingSave:
    """Takes the place of a store object's ``save_step`` while crash points are armed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.original: Callable[[Lease, StepRecord], Awaitable[StepRecord]] = store.save_step
        self.points: list[CrashPoint] = []

    @classmethod
    def install(cls, store: Store, point: CrashPoint) -> None:
        current = vars(store).get(SAVE_STEP)
        if not isinstance(current, cls):
            current = cls(store)
            vars(store)[SAVE_STEP] = current
        if point not in current.points:
            current.points.append(point)
        if store not in point._stores:
            point._stores.append(store)

    @classmethod
    def uninstall(cls, point: CrashPoint) -> None:
        for store in point._stores:
            current = vars(store).get(SAVE_STEP)
            if isinstance(current, cls) and point in current.points:
                current.points.remove(point)
                if not current.points:
                    del vars(store)[SAVE_STEP]

    async def __call__(self, lease: Lease, step: StepRecord) -> StepRecord:
        for point in self.points:
            if (step.run_id, step.key) in point._pending:
                return await point.checkpoint(lambda: self.original(lease, step), step)
        return await self.original(lease, step)


async def _die(ctx: RunContext) -> None:
    """What a process death leaves, as seen once its peers notice: no more renewals, the lease
    given back under its token (the run reads interrupted, any executor may claim it)."""
    from durable._runner import give_back

    ctx.runner = None  # the heartbeat renews only while a body runs
    await give_back(ctx.store, ctx.lease)
    task = asyncio.current_task()
    if task is not None:  # a worker's task ends with the crash: retrieve it, as a dead process logs nothing
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _target(target: object) -> tuple[str, bool]:
    if isinstance(target, TaskFunction):
        return target.name, True
    if isinstance(target, WorkflowFunction):
        raise ConfigurationError(
            f"crash point {target!r}: name a task or a step key; a child run's step key is what "
            "`durable runs show` lists for it"
        )
    if isinstance(target, str) and target:
        return target, False
    raise ConfigurationError(f"crash point: expected a @wf.task function or a step key, got {target!r}")


@contextmanager
def _armed(target: Any, after: bool, times: int) -> Iterator[CrashPoint]:
    if not isinstance(times, int) or times < 1:
        raise ConfigurationError(f"crash point {target!r}: times must be an int >= 1, got {times!r}")
    name, by_task = _target(target)
    point = CrashPoint(name, by_task, after, times)
    plugins = get_plugin_manager()
    registered = plugins.register(point, name=f"durable-testing-crash-{id(point):x}")
    try:
        yield point
    finally:
        plugins.unregister(registered)
        _CrashingSave.uninstall(point)


def crash_after(
    target: TaskFunction[Any, Any] | str, *, times: int = 1
) -> AbstractContextManager[CrashPoint]:
    """Inside this ``with`` block, the next run that executes ``target`` (a task, or an exact step
    key such as ``"charge#1"`` or ``"durable:sleep"``) stops right after that step's checkpoint is
    written, as if its process died there: the caller (or worker) gets ``SimulatedCrash`` and the
    run reads ``interrupted``. ``times`` crashes in all; steps replayed from the journal never crash.
    """
    return _armed(target, True, times)


def crash_before(
    target: TaskFunction[Any, Any] | str, *, times: int = 1
) -> AbstractContextManager[CrashPoint]:
    """As ``crash_after``, but the process dies after the step's body returned (or failed for the
    last time) and before its checkpoint is written: a resumed run executes the body again."""
    return _armed(target, False, times)
