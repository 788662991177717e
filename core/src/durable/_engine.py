"""The run engine: executing steps (replay, retries, checkpoints) and runs (lease, heartbeat, outcome)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from durable import _clock, _codec, _lifecycle
from durable._decode import decode_failure
from durable._records import ErrorInfo, RunStatus, StepRecord, StepStatus
from durable.backoff import BackoffStrategy
from durable.context import RunContext, _current, _scope
from durable.errors import (
    LeaseLost,
    NondeterminismError,
    NonRetryableError,
    RunCancelled,
    RunTimeout,
    SerializationError,
    StepTimeout,
    StoreCorrupted,
)
from durable.store import accepts_activity

if TYPE_CHECKING:
    from durable._plugins import PluginManager

T = TypeVar("T")
log = logging.getLogger("durable")

# Errors that say something about the program or the run, not about a flaky attempt.
_NEVER_RETRIED = (NonRetryableError, SerializationError, NondeterminismError, LeaseLost, RunCancelled)


@dataclass(frozen=True)
class StepPolicy:
    retries: int = 0
    backoff: BackoffStrategy | None = None
    retry_on: tuple[type[BaseException], ...] | None = None
    timeout: float | None = None

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        if attempt > self.retries or not isinstance(exc, Exception) or isinstance(exc, _NEVER_RETRIED):
            return False
        return self.retry_on is None or isinstance(exc, self.retry_on)

    def delay(self, attempt: int) -> float:
        return 0.0 if self.backoff is None else max(0.0, float(self.backoff(attempt)))


_NOTHING: frozenset[str] = frozenset()


def observe(plugins: PluginManager | None, hook: str, **kwargs: Any) -> None:
    """Call an observer hook; a failing observer is logged, never propagated."""
    if plugins is None or hook not in plugins.observed_hooks():
        return
    observers = plugins.observers(hook)
    if observers is None:  # a wrapper among them: pluggy's own call
        try:
            getattr(plugins.hook, hook)(**kwargs)
        except Exception:
            log.exception("durable observer hook %s failed", hook)
        return
    for function, names in observers:  # each isolated: one failing observer does not silence the next
        try:
            function(*[kwargs[name] for name in names])
        except Exception:
            log.exception("durable observer hook %s failed", hook)


async def call_with_timeout(
    fn: Callable[[], Awaitable[T]],
    timeout: float,
    task: str,
    run_id: str | None = None,
    key: str | None = None,
) -> T:
    """``await fn()``, raising ``StepTimeout`` (a ``TimeoutError``) after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            return await fn()
    except TimeoutError as exc:
        if isinstance(exc, StepTimeout):
            raise
        where = "" if run_id is None else f" (run {run_id!r}, step {key!r})"
        raise StepTimeout(
            f"task {task!r}{where}: an attempt took longer than its timeout of {timeout} seconds",
            run_id=run_id,
            step_key=key,
        ) from None


async def call_with_retries(fn: Callable[[], Awaitable[T]], policy: StepPolicy, task: str) -> T:
    """Call ``fn`` until it succeeds or the policy gives up (a task called outside a run)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            if policy.timeout is None:
                return await fn()
            return await call_with_timeout(fn, policy.timeout, task)
        except BaseException as exc:
            if not policy.should_retry(exc, attempt):
                raise
            await _clock.sleep(policy.delay(attempt))


def replayed(ctx: RunContext, key: str, task: str, args_digest: str) -> str | None:
    """The recorded result of step ``key`` if it completed, checking the call is the same one."""
    recorded = ctx.journal.get(key)
    if recorded is None:
        return None
    if recorded.task != task or recorded.args_digest != args_digest:
        raise NondeterminismError(
            ctx.run_id,
            key,
            recorded=f"task {recorded.task!r} with arguments digest {recorded.args_digest}",
            called=f"task {task!r} with arguments digest {args_digest}",
        )
    return recorded.result if recorded.status is StepStatus.COMPLETED else None


def unreadable_step(ctx: RunContext, key: str, exc: BaseException) -> StoreCorrupted:
    """The error for a recorded step result that is not what durable wrote."""
    error = decode_failure(repr(ctx.store), ctx.run_id, f"step {key!r}: result", exc)
    error.step_key = key
    return error


async def execute_step(
    ctx: RunContext,
    key: str,
    task: str,
    args_digest: str,
    fn: Callable[[], Awaitable[Any]],
    policy: StepPolicy,
    encode: Callable[[Any], str],
    decode: Callable[[str], T],
) -> T:
    """Replay the step ``key`` from the journal, or execute and checkpoint it."""
    recorded = replayed(ctx, key, task, args_digest)
    if recorded is not None:
        try:
            return decode(recorded)
        except _codec.Unreadable as exc:
            raise unreadable_step(ctx, key, exc) from exc
    if ctx.replay_only:  # durable replay: a step the journal lacks is where the check stops
        raise NotRecorded(key, task)

    plugins = ctx.executor.plugins
    # Checked here too, not only in observe(): its keyword arguments cost more than the check.
    watched = _NOTHING if plugins is None else plugins.observed_hooks()
    started_at = _clock.now()
    failures: list[ErrorInfo] = []
    attempt = 0
    # call_with_retries's loop, plus observers, scope and failure records: written out rather
    # than given hooks, which would cost three closures and two coroutines more per step.
    while True:
        attempt += 1
        if "durable_step_started" in watched:
            observe(plugins, "durable_step_started", run_id=ctx.run_id, key=key, task=task, attempt=attempt)
        if time.monotonic() >= ctx.lease_trusted_until:
            await ctx.confirm_lease()  # paused past its lease? then LeaseLost, and no body runs
        ctx.keys.reset_scope(key)
        token = _scope.set(key)
        ctx.in_flight[key] = attempt
        try:
            if policy.timeout is None:
                value = await fn()
            else:
                value = await call_with_timeout(fn, policy.timeout, task, ctx.run_id, key)
            break
        except BaseException as exc:
            error = exc
        finally:
            _scope.reset(token)
        if isinstance(error, Exception):
            del ctx.in_flight[key]
        # else interrupted (cancelled) or parked: the entry stays for the record of what was in flight
        if not policy.should_retry(error, attempt):
            if isinstance(error, Exception) and not isinstance(error, (LeaseLost, RunCancelled)):
                await _record_failure(ctx, key, task, args_digest, error, attempt, started_at, failures)
            raise error
        delay = policy.delay(attempt)
        failures.append(ErrorInfo.from_exception(error))
        log.info(
            "run %r step %r attempt %d failed (%r); retrying in %.3gs", ctx.run_id, key, attempt, error, delay
        )
        observe(
            plugins, "durable_step_retried",
            run_id=ctx.run_id, key=key, task=task, attempt=attempt, error=error, delay=delay,
        )  # fmt: skip
        await _clock.sleep(delay)

    del ctx.in_flight[key]
    try:
        text = encode(value)
    except SerializationError as exc:
        # Not retried: running the body again would repeat its side effects for nothing.
        raise SerializationError(
            f"task {task!r} (run {ctx.run_id!r}, step {key!r}) returned a value that cannot be "
            f"checkpointed: {exc}",
            run_id=ctx.run_id,
            step_key=key,
        ) from exc
    step = StepRecord(
        run_id=ctx.run_id,
        key=key,
        task=task,
        args_digest=args_digest,
        status=StepStatus.COMPLETED,
        result=text,
        error=_attempt_errors(failures[-1], failures) if failures else None,
        attempts=attempt,
        started_at=started_at,
        finished_at=_clock.now(),
        version=ctx.executor.workflow.version,
    )
    stored = await ctx.write(lambda: ctx.store.save_step(ctx.lease, step))
    ctx.journal[key] = stored
    if "durable_step_finished" in watched:
        observe(
            plugins, "durable_step_finished",
            run_id=ctx.run_id, key=key, task=task, attempts=attempt, error=None,
        )  # fmt: skip
    return decode(stored.result)  # type: ignore[arg-type]


def _attempt_errors(last: ErrorInfo, failures: list[ErrorInfo]) -> str:
    attempts = tuple((f.type, f.message) for f in failures)
    return ErrorInfo(last.type, last.message, last.traceback, attempts).to_json()


async def _record_failure(
    ctx: RunContext,
    key: str,
    task: str,
    args_digest: str,
    exc: Exception,
    attempts: int,
    started_at: float,
    failures: list[ErrorInfo],
) -> None:
    """Checkpoint a step that ran out of attempts, so operators see why (best effort)."""
    step = StepRecord(
        run_id=ctx.run_id,
        key=key,
        task=task,
        args_digest=args_digest,
        status=StepStatus.FAILED,
        result=None,
        error=_attempt_errors(ErrorInfo.from_exception(exc), [*failures, ErrorInfo.from_exception(exc)]),
        attempts=attempts,
        started_at=started_at,
        finished_at=_clock.now(),
        version=ctx.executor.workflow.version,
    )
    try:
        ctx.journal[key] = await ctx.write(lambda: ctx.store.save_step(ctx.lease, step))
    except Exception:
        log.warning("run %r: could not record the failure of step %r", ctx.run_id, key, exc_info=True)
    observe(
        ctx.executor.plugins, "durable_step_finished",
        run_id=ctx.run_id, key=key, task=task, attempts=step.attempts, error=exc,
    )  # fmt: skip


class NotRecorded(BaseException):
    """Stops a replay check (``durable._replay``) at the first step its journal has no completed
    checkpoint of: nothing is executed for real there. A BaseException, like ``Park``."""

    def __init__(self, key: str, task: str) -> None:
        super().__init__(key)
        self.key, self.task = key, task


class Park(BaseException):
    """Unwinds a run whose wait releases the process (a BaseException: user code
    catching ``Exception`` must not swallow it)."""

    def __init__(self, wake_at: float | None, signal: tuple[str, int] | None = None) -> None:
        super().__init__(wake_at)
        self.wake_at = wake_at
        self.signal = signal
        """(name, index) of the delivery a parked signal wait needs."""


async def execute_run(
    ctx: RunContext, body: Callable[[], Awaitable[Any]], lease_seconds: float, deadline: float | None = None
) -> Any:
    """Run a workflow body under ``ctx``'s lease, renewing it.

    The body runs in the caller's task: a task of its own cost a third of a short run's whole
    overhead. The heartbeat, ``cancel()`` and the run's deadline stop it through ``ctx.stop``,
    which cancels this task; the cancellation is taken back here, as ``asyncio.timeout`` does,
    and the caller gets the reason instead. Returns the body's value; raises its error.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError(f"run {ctx.run_id!r}: a workflow must be awaited inside an asyncio task")
    clock, parent = _clock.virtual, None
    if clock is not None:  # virtual time moves on only while no run is busy
        parent = _current.get()
        clock.run_began(ctx, parent)
    token = _current.set(ctx)
    ctx.runner = task
    timer = None
    if deadline is not None:
        reason = RunTimeout(f"run {ctx.run_id!r} passed its deadline", run_id=ctx.run_id)
        timer = _clock.call_at(deadline, ctx.stop, reason)
    heartbeat = _Heartbeat(ctx, lease_seconds)
    try:
        value = await body()
        if ctx.stop_reason is not None:  # stopped, then done before its next await
            raise ctx.stop_reason
        return value
    except asyncio.CancelledError:
        if ctx.stop_reason is not None and ctx.take_back_cancels(task) == 0:
            # Only stop() cancelled the body: report why instead of a bare cancellation.
            raise ctx.stop_reason from None
        raise
    finally:
        ctx.runner = None  # before any other await: stop() must not cancel the caller's own work
        ctx.take_back_cancels(task)  # the body may have swallowed one
        _current.reset(token)
        heartbeat.cancel()
        if timer is not None:
            timer.cancel()
        if clock is not None:
            clock.run_ended(ctx, parent)


class _Heartbeat:
    """Renews the lease of ``ctx``'s run every ``lease_seconds / 3`` while its body runs, and
    stops the run when the lease is lost or a cancel was requested.

    A timer that starts a renewal when due, not a task sleeping in a loop: most runs end before
    their first renewal, and a timer costs a fraction of creating and cancelling a task.
    """

    def __init__(self, ctx: RunContext, lease_seconds: float) -> None:
        self._ctx, self._lease_seconds = ctx, lease_seconds
        self._interval = max(lease_seconds / 3.0, 0.01)
        self._loop = asyncio.get_running_loop()
        self._renewal: asyncio.Task[None] | None = None
        self._failing = False
        self._timer = self._loop.call_later(self._interval, self._due)

    def cancel(self) -> None:
        """Stop renewing (``execute_run`` has already cleared ``ctx.runner``)."""
        self._timer.cancel()
        if self._renewal is not None:
            self._renewal.cancel()

    def _due(self) -> None:
        if self._ctx.runner is not None:  # the body still runs
            self._renewal = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        ctx = self._ctx
        sent = time.monotonic()
        try:
            # A renewal that hangs (a partition, a dead connection) counts as failed in time for
            # the next one.
            async with asyncio.timeout(self._interval):
                if accepts_activity(ctx.store) and ctx.status is RunStatus.RUNNING:
                    # A waiting run's activity says what it waits for: left as it is.
                    activity = _lifecycle.in_flight(ctx.in_flight)
                    run = await ctx.store.renew_lease(ctx.lease, self._lease_seconds, activity=activity)
                else:
                    run = await ctx.store.renew_lease(ctx.lease, self._lease_seconds)
        except LeaseLost as exc:
            log.warning("run %r: lost its lease (%s); stopping it", ctx.run_id, exc)
            ctx.stop(exc)
            return
        except Exception as exc:
            # Once per outage: a renewal every third of the lease would flood the log.
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "run %r: lease renewal failed (%r); retrying", ctx.run_id, exc)
            self._failing = True
        else:
            if self._failing:
                log.warning("run %r: lease renewed again after failures", ctx.run_id)
                self._failing = False
            ctx.trust_lease(sent)
            if run.cancel_requested:
                ctx.stop(RunCancelled(f"run {ctx.run_id!r} was cancelled", run_id=ctx.run_id))
                return
        if ctx.runner is not None:
            self._timer = self._loop.call_later(self._interval, self._due)


def final_status_of(exc: BaseException) -> RunStatus:
    return RunStatus.CANCELLED if isinstance(exc, RunCancelled) else RunStatus.FAILED
