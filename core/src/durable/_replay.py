"""Replay checks: would the current code continue the runs recorded in a store?

For each selected run the current code's workflow body runs against the run's journal, in a
``RunContext`` with ``replay_only`` set: every recorded step, signal, sleep, patch and child
returns its recorded value, and the first step the journal has no completed checkpoint of stops
the check (``NotRecorded``), before anything executes. No task body runs, no lease is taken and
nothing is written: the store is opened without creating anything and reached only through
``ReadOnlyStore``, which refuses every write. That holds for what the body asks its Workflow
outside any step (``wf.get_run``, ``wf.get_event``, ``wf.complete``) too: ``Workflow.get_store``
answers a replay's task with the checked store, so ``check_replay(store=URL)`` never opens (or
creates) the Workflow's own store, and a body's write outside a step is refused.

A run is *incompatible* when the code disagrees with its journal:

- a recorded step is called as another task or with other arguments (``NondeterminismError``);
- the code reaches a step that is not recorded while the journal holds steps the code has not
  reached yet: the old code went another way (a renamed task, a step inserted before recorded
  ones, a new branch without ``wf.patched``);
- a recorded result cannot be read as the code now declares it, the body raises where the run
  did not fail (or with another error than the one recorded), or its result cannot be stored;
- this code does not define its workflow.

Stopping at the end of the recorded journal (at a step not yet executed, or a wait still to come)
counts as compatible: from there a resumed run executes new steps, as it would anyway.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from durable import _codec
from durable._decode import decode_failure
from durable._engine import NotRecorded, Park
from durable._executor import Executor
from durable._inspect import iter_runs
from durable._lifecycle import reported
from durable._patches import UNASKED_TASKS
from durable._read_only_store import ReadOnlyStore
from durable._records import Lease, RunQuery, RunRecord, RunStatus, StepRecord
from durable._runner import encode_result
from durable.context import RunContext, _current, _scope
from durable.errors import DurableError, NondeterminismError, UnknownRunError
from durable.store import Store, accepts_create, accepts_read_only

if TYPE_CHECKING:
    from durable.workflow import Workflow

__all__ = ["DEFAULT_STATUSES", "ReplayReport", "ReplayResult", "check_replay"]

DEFAULT_STATUSES = frozenset(
    {RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.INTERRUPTED, RunStatus.FAILED}
)
"""The runs a deploy can break: every run some executor may still continue."""
REPLAY_OWNER = "durable-replay"
RUN_TIMEOUT = 60.0
"""Seconds one run's replay may take (a body awaiting something that is not durable)."""


@dataclass(frozen=True)
class ReplayResult:
    """How one run's journal fares against the current code."""

    run_id: str
    workflow: str
    status: str
    """The run's status as ``get_run`` reports it."""
    compatible: bool
    outcome: str
    """``completed`` (the body returned), ``stopped`` (at the end of the recorded journal),
    ``waiting`` (at a recorded wait still to end), ``fails as recorded``, or ``incompatible``."""
    message: str
    step_key: str | None = None
    """Where the replay stopped, or the step at fault."""
    recorded: str | None = None
    called: str | None = None
    replayed: int = 0
    """Journal entries the replay reached."""
    unreached: tuple[str, ...] = ()
    """Keys of recorded steps a completed replay never reached (steps the code no longer runs)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "compatible": self.compatible,
            "outcome": self.outcome,
            "message": self.message,
            "step_key": self.step_key,
            "recorded": self.recorded,
            "called": self.called,
            "replayed": self.replayed,
            "unreached": list(self.unreached),
        }


@dataclass(frozen=True)
class ReplayReport:
    """Every checked run; ``ok`` when none is incompatible."""

    results: list[ReplayResult] = field(default_factory=list)

    @property
    def incompatible(self) -> list[ReplayResult]:
        return [r for r in self.results if not r.compatible]

    @property
    def ok(self) -> bool:
        return not self.incompatible

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        bad = self.incompatible
        head = f"{len(self.results)} run(s) checked, {len(bad)} incompatible"
        return "\n".join([head, *(f"run {r.run_id!r}: {r.message}" for r in bad)])


async def check_replay(
    wf: Workflow,
    runs: Iterable[str] | None = None,
    *,
    workflow: str | None = None,
    statuses: Iterable[RunStatus | str] | None = None,
    store: str | os.PathLike[str] | Store | None = None,
    timeout: float = RUN_TIMEOUT,
) -> ReplayReport:
    """Replay the selected runs of ``store`` (default: ``wf``'s own) against ``wf``'s code.

    ``runs`` names runs (an unknown one raises ``UnknownRunError``); otherwise every run of the
    store, or of ``workflow``, whose reported status is in ``statuses`` (default
    ``DEFAULT_STATUSES``: the runs an executor may still continue).
    """
    inner, opened = await _open_for_reading(wf, store)
    try:
        read_only = ReadOnlyStore(inner)
        ex = Executor(wf, _returning(read_only), REPLAY_OWNER, wf.lease_seconds, wf.executor.workflows, None)
        wanted = frozenset(RunStatus(s) for s in (DEFAULT_STATUSES if statuses is None else statuses))
        results = []
        async for run in _selected(read_only, runs, workflow, wanted):
            results.append(await replay_run(ex, read_only, run, timeout=timeout))
        return ReplayReport(results)
    finally:
        if opened:
            await inner.close()


async def _open_for_reading(wf: Workflow, store: str | os.PathLike[str] | Store | None) -> tuple[Store, bool]:
    """The store to check, opened without creating it, and whether this call must close it (a
    ``Store`` passed in stays open: its caller owns it)."""
    if store is None:
        return await wf.get_store(), False
    owned = not isinstance(store, Store)
    if not isinstance(store, Store):
        from durable._plugins import as_store_url

        store = wf.plugins.store_from_url(as_store_url(store))
    options: dict[str, bool] = {}
    if accepts_create(store):
        options["create"] = False
    if accepts_read_only(store):
        options["read_only"] = True  # where the backend can, the check cannot write at all
    await store.open(**options)
    return store, owned


def _returning(store: Store) -> Any:
    async def get() -> Store:
        return store

    return get


async def _selected(
    store: Store, runs: Iterable[str] | None, workflow: str | None, statuses: frozenset[RunStatus]
) -> Any:
    if runs is not None:
        for run_id in runs:
            run = await store.get_run(run_id)
            if run is None:
                raise UnknownRunError(f"durable replay: no run {run_id!r} in {store!r}", run_id=run_id)
            yield reported(run)
        return
    async for run in iter_runs(store, RunQuery(statuses=statuses, workflow=workflow)):
        yield run


def _describe(step: StepRecord) -> str:
    return f"step {step.key!r} (task {step.task!r}, arguments digest {step.args_digest})"


async def replay_run(
    ex: Executor, store: Store, run: RunRecord, *, timeout: float = RUN_TIMEOUT
) -> ReplayResult:
    """Replay one run's journal against ``ex``'s code (see the module docstring)."""
    base = ReplayResult(run.run_id, run.workflow, str(run.status), True, "", "")

    def verdict(compatible: bool, outcome: str, message: str, **details: Any) -> ReplayResult:
        return replace(base, compatible=compatible, outcome=outcome, message=message, **details)

    if run.status is RunStatus.CORRUPT:
        return verdict(False, "incompatible", f"its stored record cannot be read: {run.error}")
    wfn = ex.workflows.get(run.workflow)
    if wfn is None:
        defined = ", ".join(sorted(ex.workflows)) or "none"
        return verdict(
            False,
            "incompatible",
            f"this code does not define workflow {run.workflow!r} (defined: {defined}): no worker of it "
            "would continue the run",
        )
    steps = await store.load_steps(run.run_id)
    journal = {step.key: step for step in steps}
    lease = Lease(run.run_id, REPLAY_OWNER, run.lease_token, 0.0)
    ctx = RunContext(ex, wfn.name, run.run_id, store, lease, journal, parkable=True, replay_only=True)

    def reached() -> int:
        return sum(1 for key in journal if ctx.keys.reached(key))

    def ahead() -> list[StepRecord]:
        """Recorded steps of the body this replay has not reached, in journal order."""
        return [s for s in steps if s.task not in UNASKED_TASKS and not ctx.keys.reached(s.key)]

    try:
        arguments = _codec.loads(run.inputs)
    except _codec.Unreadable as exc:
        error = decode_failure(repr(store), run.run_id, "inputs", exc)
        return verdict(False, "incompatible", str(error))
    token = _current.set(ctx)
    # A child run executes inside its parent's step (``_runner.run_child``), whose key scopes the
    # child's step keys: replayed under the same scope, as its parent executes it.
    parent = run.parent_run_id
    scope = run.run_id[len(parent) + 1 :] if parent and run.run_id.startswith(parent + "/") else ""
    scoped = _scope.set(scope)
    try:
        async with asyncio.timeout(timeout):
            value = await wfn.invoke(arguments)
        encode_result(wfn, run.run_id, value)
    except NotRecorded as stop:
        later = ahead()
        if later:
            return verdict(
                False,
                "incompatible",
                f"step {stop.key!r}: the code now calls task {stop.task!r}, which the journal does not "
                f"hold, while it holds {_describe(later[0])} and {len(later) - 1} more step(s) the code has "
                "not reached: the recorded run went another way",
                step_key=stop.key,
                recorded=_describe(later[0]),
                called=f"task {stop.task!r}",
                replayed=reached(),
            )
        return verdict(
            True,
            "stopped",
            f"replayed {reached()} recorded step(s); stops at step {stop.key!r} (task {stop.task!r}), "
            "which a resumed run executes next",
            step_key=stop.key,
            replayed=reached(),
        )
    except Park:
        return verdict(True, "waiting", f"replayed {reached()} recorded step(s); waits", replayed=reached())
    except NondeterminismError as exc:
        return verdict(
            False,
            "incompatible",
            f"step {exc.key!r}: the journal recorded {exc.recorded}, but the code now calls {exc.called}",
            step_key=exc.key,
            recorded=exc.recorded,
            called=exc.called,
            replayed=reached(),
        )
    except TimeoutError:
        return verdict(
            False,
            "incompatible",
            f"its replay did not end within {timeout:g} s (does the body await something that is not "
            "a durable step, signal or sleep?)",
            replayed=reached(),
        )
    except Exception as exc:
        recorded = run.error_info if run.status is RunStatus.FAILED else None
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        if recorded is not None and recorded.type == kind:
            return verdict(True, "fails as recorded", f"raises {kind} as the run did", replayed=reached())
        step_key = exc.step_key if isinstance(exc, DurableError) else None
        if step_key is not None:
            where = f"step {step_key!r}: "
        else:  # raised between steps: name the last one it replayed, where the code went wrong
            passed = [s.key for s in steps if s.task not in UNASKED_TASKS and ctx.keys.reached(s.key)]
            step_key = passed[-1] if passed else None
            where = (
                "" if step_key is None else f"after step {step_key!r} (the last recorded step it replayed): "
            )
        return verdict(
            False,
            "incompatible",
            f"{where}the code raises {type(exc).__name__}: {exc}",
            step_key=step_key,
            replayed=reached(),
        )
    finally:
        _scope.reset(scoped)
        _current.reset(token)
    unreached = tuple(s.key for s in ahead())
    note = f"; recorded steps it no longer reaches: {', '.join(unreached)}" if unreached else ""
    return verdict(
        True, "completed", f"replayed {reached()} recorded step(s) to the end{note}", replayed=reached(),
        unreached=unreached,
    )  # fmt: skip
