"""Starting, claiming, driving and awaiting runs: the life of a run around its body."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from durable import _codec, _keys
from durable._engine import Park, StepPolicy, execute_run, execute_step, final_status_of, observe
from durable._owner import is_dead_local_owner
from durable._records import ErrorInfo, Lease, RunRecord, RunStatus, StepRecord
from durable.context import RunContext, current_run
from durable.errors import (
    LeaseLost,
    RunCancelled,
    RunConflictError,
    RunFailed,
    RunInProgress,
    RunParked,
    SerializationError,
    UnknownRunError,
)
from durable.store import Store

if TYPE_CHECKING:
    from durable.workflow import Workflow, WorkflowFunction

CHILD_TASK = "durable:child"


def encode_inputs(wfn: WorkflowFunction[Any, Any], run_id: str, arguments: dict[str, Any]) -> tuple[str, str]:
    """The run's stored inputs and their digest."""
    try:
        return _codec.dumps_and_digest(arguments)
    except SerializationError as exc:
        raise SerializationError(
            f"workflow {wfn.name!r} run {run_id!r}: its arguments cannot be stored: {exc}"
        ) from exc


def new_run(
    wf: Workflow,
    wfn: WorkflowFunction[Any, Any],
    run_id: str,
    arguments: dict[str, Any],
    *,
    claimed: bool,
) -> RunRecord:
    inputs, digest = encode_inputs(wfn, run_id, arguments)
    now = time.time()
    parent = current_run()
    return RunRecord(
        run_id=run_id,
        workflow=wfn.name,
        status=RunStatus.RUNNING if claimed else RunStatus.PENDING,
        inputs=inputs,
        inputs_digest=digest,
        created_at=now,
        updated_at=now,
        owner=wf.owner if claimed else None,
        lease_token=1 if claimed else 0,
        lease_expires_at=now + wf.lease_seconds if claimed else None,
        deadline=None if wfn.timeout is None else now + wfn.timeout,
        parent_run_id=None if parent is None else parent.run_id,
    )


def check_same_run(run: RunRecord, workflow: str, digest: str) -> None:
    if run.workflow != workflow:
        raise RunConflictError(
            f"run id {run.run_id!r} belongs to workflow {run.workflow!r}, not {workflow!r}; "
            "use another run id"
        )
    if run.inputs_digest != digest:
        raise RunConflictError(
            f"run {run.run_id!r} of workflow {workflow!r} was started with other inputs ({run.inputs}); "
            "a run id names one execution: use another id for other inputs"
        )


async def start_or_resume(
    wf: Workflow,
    wfn: WorkflowFunction[Any, Any],
    run_id: str,
    arguments: dict[str, Any],
    *,
    wait: bool,
    timeout: float | None,
) -> Any:
    """Execute a run in this process: create it, or claim it and replay its journal."""
    store = await wf.get_store()
    fresh = new_run(wf, wfn, run_id, arguments, claimed=True)
    run, created = await store.create_run(fresh)
    if created:
        assert fresh.owner is not None and fresh.lease_expires_at is not None
        lease = Lease(run_id, fresh.owner, fresh.lease_token, fresh.lease_expires_at)
        return await drive(wf, wfn, store, run, lease, {}, arguments, parkable=False)
    check_same_run(run, wfn.name, fresh.inputs_digest)
    claimed = await claim_or_wait(wf, store, run, wait, timeout)
    if isinstance(claimed, RunRecord):
        return outcome(claimed, wfn)
    journal = {step.key: step for step in await store.load_steps(run_id)}
    return await drive(wf, wfn, store, run, claimed, journal, arguments, parkable=False)


async def claim_or_wait(
    wf: Workflow, store: Store, run: RunRecord, wait: bool, timeout: float | None
) -> Lease | RunRecord:
    """Take the run's lease, or wait for its owner to finish it (returning the final record)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = 0.01
    while True:
        if run.status.is_final:
            return run
        lease = await store.claim_run(run.run_id, wf.owner, wf.lease_seconds)
        if lease is not None:
            return lease
        if is_dead_local_owner(run.owner):
            # Its process is gone: release the lease with its own token instead of waiting for
            # it to expire. A stale token means another executor got there first.
            assert run.owner is not None
            try:
                await store.update_run(
                    Lease(run.run_id, run.owner, run.lease_token, 0.0), run.status, release=True
                )
            except LeaseLost:
                pass
        elif not wait or (deadline is not None and time.monotonic() >= deadline):
            raise RunInProgress(
                f"run {run.run_id!r} is being executed by {run.owner!r} (lease until "
                f"{run.lease_expires_at}); call again later or with wait=True"
            )
        else:
            await asyncio.sleep(interval)
            interval = min(interval * 2, 0.5)
        latest = await store.get_run(run.run_id)
        if latest is None:
            raise UnknownRunError(f"run {run.run_id!r} was deleted while waiting for it")
        run = latest


async def drive(
    wf: Workflow,
    wfn: WorkflowFunction[Any, Any],
    store: Store,
    run: RunRecord,
    lease: Lease,
    journal: dict[str, StepRecord],
    arguments: dict[str, Any],
    *,
    parkable: bool,
) -> Any:
    """Execute a claimed run's body and record how it ended."""
    run_id = run.run_id
    ctx = RunContext(wf, wfn.name, run_id, store, lease, journal, parkable=parkable)
    plugins = wf.plugins

    def finished(status: str, error: BaseException | None) -> None:
        observe(plugins, "durable_run_finished", workflow=wfn.name, run_id=run_id, status=status, error=error)

    observe(plugins, "durable_run_started", workflow=wfn.name, run_id=run_id, resumed=bool(journal))
    wf._active[run_id] = ctx
    try:
        value = await execute_run(ctx, lambda: wfn.invoke(arguments), wf.lease_seconds, run.deadline)
    except Park as park:
        wake_at = park.wake_at
        await ctx.write(lambda: store.update_run(lease, RunStatus.WAITING, wake_at=wake_at, release=True))
        if park.signal is not None:
            await _wake_if_delivered(wf, store, run_id, *park.signal)
        finished("waiting", None)
        raise RunParked(run_id, park.wake_at) from None
    except asyncio.CancelledError:
        if isinstance(ctx.stop_reason, RunCancelled):
            # Cancelled while its caller is being cancelled too (a parent): still a cancellation.
            error = ErrorInfo.from_exception(ctx.stop_reason).to_json()
            await _quietly(store.update_run(lease, RunStatus.CANCELLED, error=error, release=True))
            finished("cancelled", ctx.stop_reason)
            raise
        # Interrupted (shutdown, caller cancelled): release the lease so any executor may resume.
        await _quietly(store.update_run(lease, RunStatus.RUNNING, release=True))
        finished("running", None)
        raise
    except Exception as exc:
        status = final_status_of(exc)
        error = ErrorInfo.from_exception(exc).to_json()
        if not isinstance(exc, LeaseLost):  # another executor owns the run now: write nothing
            await _quietly(ctx.write(lambda: store.update_run(lease, status, error=error, release=True)))
        finished(status.value, exc)
        raise
    finally:
        wf._active.pop(run_id, None)
    text = _codec.dumps(value)
    await ctx.write(lambda: store.update_run(lease, RunStatus.COMPLETED, result=text, release=True))
    finished("completed", None)
    return _codec.loads(text, _codec.return_annotation(wfn.fn))


async def _wake_if_delivered(wf: Workflow, store: Store, run_id: str, name: str, index: int) -> None:
    """Close the window between checking for a signal and parking: a delivery that committed
    in between found the run still running, so nothing marked it due. Mark it due now."""
    if len(await store.list_signals(run_id, name)) <= index:
        return
    lease = await store.claim_run(run_id, wf.owner, wf.lease_seconds)
    if lease is not None:  # None: another executor already took it, which is just as good
        await store.update_run(lease, RunStatus.WAITING, wake_at=time.time(), release=True)


async def resume_claimed(wf: Workflow, run: RunRecord, lease: Lease, *, parkable: bool) -> Any:
    """Drive a run claimed from the store (by a worker or ``resume()``) from its stored inputs."""
    wfn = wf._workflows[run.workflow]
    store = await wf.get_store()
    journal = {step.key: step for step in await store.load_steps(run.run_id)}
    return await drive(wf, wfn, store, run, lease, journal, _codec.loads(run.inputs), parkable=parkable)


async def enqueue(
    wf: Workflow, wfn: WorkflowFunction[Any, Any], run_id: str, arguments: dict[str, Any]
) -> str:
    """Record a pending run for a worker to execute; idempotent for the same inputs."""
    store = await wf.get_store()
    fresh = new_run(wf, wfn, run_id, arguments, claimed=False)
    run, _ = await store.create_run(fresh)
    check_same_run(run, wfn.name, fresh.inputs_digest)
    return run_id


async def wait_for_outcome(wf: Workflow, run_id: str, timeout: float | None) -> Any:
    """Wait until the run is completed (return its result) or failed or cancelled (raise)."""
    store = await wf.get_store()
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = 0.01
    while True:
        run = await store.get_run(run_id)
        if run is None:
            raise UnknownRunError(f"no run {run_id!r}")
        if run.status is RunStatus.COMPLETED:
            wfn = wf._workflows.get(run.workflow)
            return outcome(run, wfn)
        if run.status is RunStatus.CANCELLED:
            raise RunCancelled(f"run {run_id!r} was cancelled")
        if run.status is RunStatus.FAILED and not run.lease_is_live(time.time()):
            info = run.error_info
            raise RunFailed(
                f"run {run_id!r} failed: {info.type}: {info.message}" if info else f"run {run_id!r} failed"
            )
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"run {run_id!r} is still {run.status.value} after {timeout} seconds")
        await asyncio.sleep(interval)
        interval = min(interval * 2, 0.25)


def outcome(run: RunRecord, wfn: WorkflowFunction[Any, Any] | None) -> Any:
    """The stored result of a completed run; raises for a cancelled one."""
    if run.status is RunStatus.CANCELLED:
        raise RunCancelled(f"run {run.run_id!r} was cancelled; call wf.resume({run.run_id!r}) to continue it")
    assert run.result is not None
    return _codec.loads(run.result, _codec.return_annotation(wfn.fn) if wfn is not None else Any)


async def run_child(parent: RunContext, wfn: WorkflowFunction[Any, Any], arguments: dict[str, Any]) -> Any:
    """A workflow called from a workflow: a child run whose result is a step of the parent."""
    key = parent.next_key(_keys.system_base("child", wfn.name))
    child_id = f"{parent.run_id}/{key}"

    async def run() -> Any:
        return await start_or_resume(parent.workflow, wfn, child_id, arguments, wait=True, timeout=None)

    return await execute_step(
        parent,
        key,
        CHILD_TASK,
        _codec.digest([wfn.name, arguments]),
        run,
        StepPolicy(),
        _codec.dumps,
        lambda text: _codec.loads(text, _codec.return_annotation(wfn.fn)),
    )


async def _quietly(op: Any) -> None:
    try:
        await op
    except Exception:
        import logging

        logging.getLogger("durable").warning("could not record a run's outcome", exc_info=True)
