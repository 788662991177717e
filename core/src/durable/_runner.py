"""Starting, claiming, driving and awaiting runs: the life of a run around its body.

Every status change here is one of ``durable._lifecycle.TRANSITIONS``: the owner's through
``RunContext.update``, the others checked with ``_lifecycle.require`` before they are made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from durable import _clock, _codec, _keys, _lifecycle
from durable._decode import corruption, decode_failure
from durable._engine import Park, StepPolicy, execute_run, execute_step, final_status_of, observe
from durable._lifecycle import Actor
from durable._owner import is_dead_local_owner
from durable._records import ErrorInfo, Lease, RunRecord, RunStatus, StepRecord
from durable._versions import record_version
from durable.context import RunContext, _scope, current_run
from durable.errors import (
    ConfigurationError,
    LeaseLost,
    RunCancelled,
    RunConflictError,
    RunFailed,
    RunInProgress,
    RunParked,
    SerializationError,
    StoreError,
    UnknownRunError,
    WaitTimeout,
)
from durable.store import Store, accepts_activity

if TYPE_CHECKING:
    from durable._executor import Executor
    from durable.workflow import WorkflowFunction

CHILD_TASK = "durable:child"
log = logging.getLogger("durable")

_REFUSED_CLAIMS = 3
"""Claims a store may refuse for a run nobody holds before ``claim_or_wait`` calls it a store bug
(one refusal is a race with another claimer, which then holds a live lease)."""
CLOCK_TOLERANCE = 120.0
"""Seconds an unchanged lease may look expired on this host's clock while the store still refuses
to claim the run, before ``claim_or_wait`` calls that a store bug: the store's clock (a server's)
may be behind this host's, but not by this much."""


CHILD_MARK = "/durable:"
"""What every child run's id contains (``{parent}/`` and a ``_keys.system_base`` key), and no
caller's may."""


def caller_run_id(run_id: str, workflow: str) -> str:
    """``run_id`` if a caller may choose it: the child-run namespace is reserved, or a foreign run
    could occupy a child's record (and a parent adopt its result)."""
    if CHILD_MARK in run_id:
        raise ConfigurationError(
            f"workflow {workflow!r}: run id {run_id[:200]!r} contains {CHILD_MARK!r}, which is reserved "
            "for the ids of child runs",
            run_id=run_id,
        )
    return run_id


def encode_inputs(wfn: WorkflowFunction[Any, Any], run_id: str, arguments: dict[str, Any]) -> tuple[str, str]:
    """The run's stored inputs and their digest."""
    try:
        return _codec.dumps_and_digest(arguments)
    except SerializationError as exc:
        raise SerializationError(
            f"workflow {wfn.name!r} run {run_id!r}: its arguments cannot be stored: {exc}", run_id=run_id
        ) from exc


def new_run(
    ex: Executor,
    wfn: WorkflowFunction[Any, Any],
    run_id: str,
    arguments: dict[str, Any],
    *,
    claimed: bool,
) -> RunRecord:
    inputs, digest = encode_inputs(wfn, run_id, arguments)
    now = _clock.now()  # workflow time; the lease is on the wall clock, as the store judges it
    parent = current_run()
    return RunRecord(
        run_id=run_id,
        workflow=wfn.name,
        status=RunStatus.RUNNING if claimed else RunStatus.PENDING,
        inputs=inputs,
        inputs_digest=digest,
        created_at=now,
        updated_at=now,
        owner=ex.owner if claimed else None,
        lease_token=1 if claimed else 0,
        lease_expires_at=time.time() + ex.lease_seconds if claimed else None,
        deadline=None if wfn.timeout is None else now + wfn.timeout,
        parent_run_id=None if parent is None else parent.run_id,
        version=ex.workflow.version,
        context=None if ex.plugins is None else ex.plugins.run_context(wfn.name, run_id),
    )


def check_same_run(run: RunRecord, workflow: str, digest: str) -> None:
    readable(run)
    if run.workflow != workflow:
        raise RunConflictError(
            f"run id {run.run_id!r} belongs to workflow {run.workflow!r}, not {workflow!r}; "
            "use another run id",
            run_id=run.run_id,
        )
    if run.inputs_digest != digest:
        raise RunConflictError(
            f"run {run.run_id!r} of workflow {workflow!r} was started with other inputs ({run.inputs}); "
            "a run id names one execution: use another id for other inputs",
            run_id=run.run_id,
        )


async def start_or_resume(
    ex: Executor,
    wfn: WorkflowFunction[Any, Any],
    run_id: str,
    arguments: dict[str, Any],
    *,
    wait: bool,
    timeout: float | None,
) -> Any:
    """Execute a run in this process: create it, or claim it and replay its journal."""
    store = await ex.store()
    fresh = new_run(ex, wfn, run_id, arguments, claimed=True)
    sent = time.monotonic()
    run, created = await store.create_run(fresh)
    if created:
        assert fresh.owner is not None and fresh.lease_expires_at is not None
        lease = Lease(run_id, fresh.owner, fresh.lease_token, fresh.lease_expires_at)
        return await drive(ex, wfn, store, run, lease, {}, arguments, parkable=False, leased_at=sent)
    check_same_run(run, wfn.name, fresh.inputs_digest)
    sent = time.monotonic()
    claimed = await claim_or_wait(ex, store, run, wait, timeout)
    if isinstance(claimed, RunRecord):
        return outcome(claimed, wfn)
    journal = {step.key: step for step in await store.load_steps(run_id)}
    return await drive(ex, wfn, store, run, claimed, journal, arguments, parkable=False, leased_at=sent)


async def claim_or_wait(
    ex: Executor, store: Store, run: RunRecord, wait: bool, timeout: float | None
) -> Lease | RunRecord:
    """Take the run's lease, or wait for its owner to finish it (returning the final record)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = 0.01
    refused = 0
    expired: tuple[tuple[int, float | None], float] | None = None
    """The lease (token, expiry) seen expired on this host's clock, and since when (monotonic)."""
    while True:
        if run.status.is_final:
            return run
        lease = await store.claim_run(run.run_id, ex.owner, ex.lease_seconds)
        if lease is not None:
            return lease
        latest = await store.get_run(run.run_id)
        if latest is None:
            raise UnknownRunError(f"run {run.run_id!r} was deleted while waiting for it", run_id=run.run_id)
        run = readable(latest)
        if run.status.is_final:
            return run
        # Only a run with no owner at all proves the store wrong: a lease that looks expired on
        # this host's clock may be live on the store's (clocks differ), so that one is waited for.
        if run.owner is None and run.status in _lifecycle.CLAIMABLE:
            refused += 1
            if refused >= _REFUSED_CLAIMS:
                raise StoreError(
                    f"{store!r} refused {refused} claims of run {run.run_id!r} ({run.status.value}, "
                    f"no live lease): claim_run must take a run in durable._lifecycle.CLAIMABLE whose "
                    "lease is not live (durable-contract-tests checks this)",
                    run_id=run.run_id,
                )
        elif is_dead_local_owner(run.owner):
            # Its process is gone: give its lease back with its own token (keeping it as the last
            # owner) instead of waiting for it to expire. A stale token: another got there first.
            assert run.owner is not None
            await give_back(store, Lease(run.run_id, run.owner, run.lease_token, 0.0))
        elif not wait or (deadline is not None and time.monotonic() >= deadline):
            raise RunInProgress(run.run_id, run.owner, run.lease_expires_at)
        else:
            # A lease nobody renews, expired longer ago than clocks can differ, and still refused:
            # the store's claim_run is wrong, and waiting for it would never end.
            held = (run.lease_token, run.lease_expires_at)
            if run.status not in _lifecycle.CLAIMABLE or run.lease_is_live(time.time()):
                expired = None
            elif expired is None or expired[0] != held:
                expired = (held, time.monotonic())
            elif time.monotonic() - expired[1] > CLOCK_TOLERANCE:
                raise StoreError(
                    f"{store!r} refused to claim run {run.run_id!r} ({run.status.value}) for "
                    f"{CLOCK_TOLERANCE:g} s after the lease of its owner {run.owner!r} expired at "
                    f"{run.lease_expires_at!r}, unrenewed: claim_run must take a run whose lease is not "
                    "live (durable-contract-tests checks this), unless the store's clock is that far "
                    "behind this host's",
                    run_id=run.run_id,
                )
            await asyncio.sleep(interval)
            interval = min(interval * 2, 0.5)


async def give_back(store: Store, lease: Lease, activity: str | None = None) -> None:
    """Give a lease back at once, keeping its owner as the run's last owner: the run reads
    ``interrupted`` and any executor may claim it. A stale token means someone else holds it."""
    try:
        if activity is not None and accepts_activity(store):
            await store.renew_lease(lease, 0.0, activity=activity)
        else:
            await store.renew_lease(lease, 0.0)
    except LeaseLost:
        pass


async def drive(
    ex: Executor,
    wfn: WorkflowFunction[Any, Any],
    store: Store,
    run: RunRecord,
    lease: Lease,
    journal: dict[str, StepRecord],
    arguments: dict[str, Any],
    *,
    parkable: bool,
    leased_at: float,
) -> Any:
    """Execute a claimed run's body and record how it ended; ``leased_at`` is when (monotonic)
    the claim or creation that gave ``lease`` was sent."""
    run_id = run.run_id
    ctx = RunContext(ex, wfn.name, run_id, store, lease, journal, parkable=parkable)
    ctx.trust_lease(leased_at)
    plugins = ex.plugins

    def finished(status: str, error: BaseException | None) -> None:
        observe(plugins, "durable_run_finished", workflow=wfn.name, run_id=run_id, status=status, error=error)

    if run.cancel_requested:
        # Cancelled while nobody held it (its owner died, then its lease expired): end it now.
        cancelled = RunCancelled(f"run {run_id!r} was cancelled", run_id=run_id)
        await ctx.update(
            RunStatus.CANCELLED, error=ErrorInfo.from_exception(cancelled).to_json(), release=True
        )
        finished("cancelled", cancelled)
        raise cancelled

    observe(
        plugins, "durable_run_started",
        workflow=wfn.name, run_id=run_id, resumed=bool(journal), attempt=lease.token, run=run,
    )  # fmt: skip
    ex.active[run_id] = ctx
    try:
        if ex.workflow.version is not None:
            await record_version(ctx, ex.workflow.version)
        scope = child_scope(run)
        value = await execute_run(
            ctx,
            (lambda: wfn.invoke(arguments)) if scope is None else (lambda: _in_scope(scope, wfn, arguments)),
            ex.lease_seconds,
            run.deadline,
        )
        text = encode_result(wfn, run_id, value)
    except Park as park:
        wake_at = park.wake_at
        activity = (
            _lifecycle.waiting_for_signal(park.signal[0], None)
            if park.signal is not None
            else _lifecycle.sleeping_until(wake_at or 0.0)
        )
        await ctx.update(RunStatus.WAITING, wake_at=wake_at, release=True, activity=activity)
        if park.signal is not None:
            await _wake_if_delivered(ex, store, run_id, *park.signal)
        finished("waiting", None)
        raise RunParked(run_id, park.wake_at) from None
    except asyncio.CancelledError:
        if isinstance(ctx.stop_reason, RunCancelled):
            # Cancelled while its caller is being cancelled too (a parent): still a cancellation.
            error = ErrorInfo.from_exception(ctx.stop_reason).to_json()
            await _quietly(run_id, ctx.update(RunStatus.CANCELLED, error=error, release=True))
            finished("cancelled", ctx.stop_reason)
            raise
        # Interrupted (shutdown, caller cancelled): give the lease back now, so the run reads
        # interrupted and any executor may resume it, with the steps it was executing.
        await _quietly(run_id, give_back(store, lease, _lifecycle.in_flight(ctx.in_flight)))
        finished("interrupted", None)
        raise
    except Exception as exc:
        status = final_status_of(exc)
        error = ErrorInfo.from_exception(exc).to_json()
        if not isinstance(exc, LeaseLost):  # another executor owns the run now: write nothing
            await _quietly(run_id, ctx.update(status, error=error, release=True))
        finished(status.value, exc)
        raise
    finally:
        ex.active.pop(run_id, None)
    await ctx.update(RunStatus.COMPLETED, result=text, release=True)
    finished("completed", None)
    return _codec.loads(text, _codec.return_annotation(wfn.fn))


def child_scope(run: RunRecord) -> str | None:
    """The step scope a child run's journal keys were recorded under: its parent's key for the
    child step (``{parent}/{key}`` is the child's id), or ``None`` for a run that is no child."""
    parent = run.parent_run_id
    if parent is None or not run.run_id.startswith(f"{parent}/"):
        return None
    key = run.run_id[len(parent) + 1 :]
    return key if CHILD_MARK.lstrip("/") in key else None


async def _in_scope(scope: str, wfn: WorkflowFunction[Any, Any], arguments: dict[str, Any]) -> Any:
    """A child's body under its recorded scope, however it was claimed: by its parent (which
    already set the same scope), or on its own by ``resume()`` or a worker."""
    token = _scope.set(scope)
    try:
        return await wfn.invoke(arguments)
    finally:
        _scope.reset(token)


def encode_result(wfn: WorkflowFunction[Any, Any], run_id: str, value: Any) -> str:
    """The stored form of a run's return value, checked against the workflow's return annotation
    as a task's is (a value the annotation refuses is not stored)."""
    try:
        return _codec.dumps(value, _codec.return_annotation(wfn.fn))
    except SerializationError as exc:
        raise SerializationError(
            f"workflow {wfn.name!r} run {run_id!r} returned a value that cannot be stored: {exc}",
            run_id=run_id,
        ) from exc


async def _wake_if_delivered(ex: Executor, store: Store, run_id: str, name: str, index: int) -> None:
    """Close the window between checking for a signal and parking: a delivery that committed
    in between found the run still running, so nothing marked it due. Mark it due now."""
    if len(await store.list_signals(run_id, name)) <= index:
        return
    lease = await store.claim_run(run_id, ex.owner, ex.lease_seconds)
    if lease is not None:  # None: another executor already took it, which is just as good
        _lifecycle.require(run_id, RunStatus.RUNNING, RunStatus.WAITING, Actor.OWNER)
        await store.update_run(lease, RunStatus.WAITING, wake_at=time.time(), release=True)


async def resume_claimed(
    ex: Executor, run: RunRecord, lease: Lease, *, parkable: bool, leased_at: float
) -> Any:
    """Drive a run claimed from the store (by a worker or ``resume()``) from its stored inputs;
    ``leased_at`` is when (monotonic) the claim was sent."""
    wfn = ex.workflow_of(readable(run).run_id, run.workflow)
    store = await ex.store()
    journal = {step.key: step for step in await store.load_steps(run.run_id)}
    try:
        arguments = _codec.loads(run.inputs)
    except _codec.Unreadable as exc:
        raise decode_failure(repr(store), run.run_id, "inputs", exc) from exc
    return await drive(ex, wfn, store, run, lease, journal, arguments, parkable=parkable, leased_at=leased_at)


async def enqueue(
    ex: Executor, wfn: WorkflowFunction[Any, Any], run_id: str, arguments: dict[str, Any]
) -> str:
    """Record a pending run for a worker to execute; idempotent for the same inputs."""
    store = await ex.store()
    fresh = new_run(ex, wfn, run_id, arguments, claimed=False)
    run, _ = await store.create_run(fresh)
    check_same_run(run, wfn.name, fresh.inputs_digest)
    return run_id


async def wait_for_outcome(ex: Executor, run_id: str, timeout: float | None) -> Any:
    """Wait until the run is completed (return its result) or failed or cancelled (raise)."""
    store = await ex.store()
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = 0.01
    while True:
        run = await store.get_run(run_id)
        if run is None:
            raise UnknownRunError(f"no run {run_id!r} in {store!r}", run_id=run_id)
        readable(run)
        if run.status is RunStatus.COMPLETED:
            return outcome(run, ex.workflows.get(run.workflow))
        if run.status is RunStatus.CANCELLED:
            raise RunCancelled(f"run {run_id!r} was cancelled", run_id=run_id)
        if run.status is RunStatus.FAILED and not run.lease_is_live(time.time()):
            info = run.error_info
            failed = RunFailed(
                f"run {run_id!r} failed: {info.type}: {info.message}" if info else f"run {run_id!r} failed",
                run_id=run_id,
            )
            failed.error = info
            raise failed
        if deadline is not None and time.monotonic() >= deadline:
            raise _wait_timeout(store, _lifecycle.reported(run), timeout)
        await asyncio.sleep(interval)
        interval = min(interval * 2, 0.25)


def _wait_timeout(store: Store, run: RunRecord, timeout: float | None) -> WaitTimeout:
    hint = ""
    if run.status is RunStatus.PENDING and run.lease_token == 0:
        hint = (
            f"; no executor has taken it yet: is a worker running for workflow {run.workflow!r} "
            f"on {store!r} (`durable worker <module>:<workflow object>`, or wf.run_worker())?"
        )
    elif run.status is RunStatus.INTERRUPTED:
        hint = f"; its executor {run.owner!r} is gone: a worker resumes it, or wf.resume({run.run_id!r})"
    error = WaitTimeout(
        f"run {run.run_id!r} is still {run.status.value} after {timeout} seconds{hint}", run_id=run.run_id
    )
    error.status = run.status
    return error


def outcome(run: RunRecord, wfn: WorkflowFunction[Any, Any] | None) -> Any:
    """The stored result of a completed run; raises for a cancelled one."""
    if run.status is RunStatus.CANCELLED:
        raise RunCancelled(
            f"run {run.run_id!r} was cancelled; call wf.resume({run.run_id!r}) to continue it",
            run_id=run.run_id,
        )
    assert run.result is not None
    try:
        return _codec.loads(run.result, _codec.return_annotation(wfn.fn) if wfn is not None else Any)
    except _codec.Unreadable as exc:
        raise decode_failure("", run.run_id, "result", exc) from exc
    except _codec.WrongType as exc:
        assert wfn is not None
        raise SerializationError(
            f"workflow {wfn.name!r} run {run.run_id!r}: its stored result cannot be read as its return "
            f"annotation says: {exc}",
            run_id=run.run_id,
        ) from exc


def readable(run: RunRecord) -> RunRecord:
    """``run``, unless its stored record cannot be read: then ``StoreCorrupted`` naming the field."""
    if run.status is RunStatus.CORRUPT:
        raise corruption(run)
    return run


async def run_child(parent: RunContext, wfn: WorkflowFunction[Any, Any], arguments: dict[str, Any]) -> Any:
    """A workflow called from a workflow: a child run whose result is a step of the parent."""
    key = parent.next_key(_keys.system_base("child", wfn.name))
    child_id = f"{parent.run_id}/{key}"

    async def run() -> Any:
        return await start_or_resume(parent.executor, wfn, child_id, arguments, wait=True, timeout=None)

    return await execute_step(
        parent,
        key,
        CHILD_TASK,
        _codec.digest([wfn.name, arguments]),
        run,
        StepPolicy(),
        lambda value: encode_result(wfn, child_id, value),
        lambda text: _codec.loads(text, _codec.return_annotation(wfn.fn)),
    )


async def _quietly(run_id: str, op: Any) -> None:
    try:
        await op
    except Exception:
        log.warning("run %r: could not record how it ended", run_id, exc_info=True)
