"""The state of the run executing in the current task, and the step API built on it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from durable import _codec, _lifecycle
from durable._keys import KeyCounter
from durable._records import RunStatus
from durable.backoff import BackoffStrategy
from durable.errors import LeaseLost, StoreUnavailable
from durable.store import Lease, StepRecord, Store, accepts_activity

if TYPE_CHECKING:
    from durable._executor import Executor
    from durable.workflow import Workflow

__all__ = ["RunContext", "current_run"]

T = TypeVar("T")

log = logging.getLogger("durable")

_current: ContextVar[RunContext | None] = ContextVar("durable_run", default=None)
_scope: ContextVar[str] = ContextVar("durable_scope", default="")

LEASE_TRUST = 0.8
"""Fraction of ``lease_seconds`` after its last confirmed renewal that an owner starts step bodies
without asking the store first: the rest is a margin for clock rates and scheduling delays."""

STORE_WRITE_BUDGET = 10.0
"""Seconds a run's store write keeps being retried while the store is unavailable, counted from
its first attempt; the attempt under way when the budget runs out is the last (a store's own
retries happen inside one attempt). Then ``StoreUnavailable`` reaches the run."""


@dataclass(eq=False)
class RunContext:
    """One executing run: its store, lease, journal and key counters."""

    executor: Executor
    workflow_name: str
    run_id: str
    store: Store
    lease: Lease
    journal: dict[str, StepRecord]
    keys: KeyCounter = field(default_factory=KeyCounter)
    signal_counts: dict[str, int] = field(default_factory=dict)
    parkable: bool = False
    """Waits may release the process (the run is executed by a worker)."""
    replay_only: bool = False
    """A replay check (``durable replay``): recorded results only, no step executed, no write."""
    stop_reason: BaseException | None = None
    """Why the run was stopped from outside its body (cancelled, lease lost, deadline)."""
    runner: asyncio.Task[Any] | None = None
    """The task running the body, while it runs (see ``execute_run``)."""
    cancels: int = 0
    """Cancellations of ``runner`` that ``stop`` requested and ``execute_run`` has not taken back."""
    status: RunStatus = RunStatus.RUNNING
    """The run's stored status, as this owner last wrote it."""
    in_flight: dict[str, int] = field(default_factory=dict)
    """Steps executing now: key -> attempt (the heartbeat records them as the run's activity)."""
    lease_trusted_until: float = float("inf")
    """``time.monotonic()`` after which this owner no longer trusts its lease without asking the
    store: the send time of the last confirmed claim or renewal, plus ``LEASE_TRUST`` of the lease
    (see ``confirm_lease``)."""

    def trust_lease(self, sent_at: float) -> None:
        """A claim or renewal sent at ``sent_at`` (monotonic) was confirmed by the store."""
        self.lease_trusted_until = sent_at + self.executor.lease_seconds * LEASE_TRUST

    async def confirm_lease(self) -> None:
        """Make sure the lease is still this owner's before a step body starts.

        Called when the lease went unconfirmed for longer than it can be trusted (the process was
        paused, the event loop blocked, renewals failing): a fenced renewal proves the token is
        still current, or raises ``LeaseLost`` and the step body is not executed.
        """
        sent = time.monotonic()
        seconds = self.executor.lease_seconds
        store, lease = self.store, self.lease
        try:
            async with asyncio.timeout(seconds * LEASE_TRUST):
                await self.write(lambda: store.renew_lease(lease, seconds))
        except TimeoutError:
            lost = LeaseLost(
                f"run {self.run_id!r}: its lease went unconfirmed past {seconds * LEASE_TRUST:.3g} s and the "
                "store did not confirm it in time; stopping before the next step, nothing written",
                run_id=self.run_id,
            )
        except LeaseLost as exc:
            lost = exc
        else:
            self.trust_lease(sent)
            return
        # The heartbeat warns when the store says another executor took the run; this is the
        # other way an owner finds its lease gone (a partition, a pause): said as loudly.
        log.warning("run %r: lost its lease (%s); stopping it", self.run_id, lost)
        raise lost from None

    @property
    def workflow(self) -> Workflow:
        """The ``Workflow`` this run belongs to."""
        return self.executor.workflow

    async def update(self, status: RunStatus, *, activity: str | None = None, **fields: Any) -> None:
        """The owner's write of the run's status (``Store.update_run``), as the lifecycle allows."""
        _lifecycle.require(self.run_id, self.status, status, _lifecycle.Actor.OWNER)
        store, lease = self.store, self.lease
        if accepts_activity(store):
            fields["activity"] = activity
        await self.write(lambda: store.update_run(lease, status, **fields))
        self.status = status

    def stop(self, reason: BaseException) -> None:
        """Stop the body at its next await and make the run end with ``reason``."""
        if self.stop_reason is None:
            self.stop_reason = reason
        runner = self.runner
        if runner is None:
            return
        if runner is asyncio.current_task():
            # The body stopping its own run: cancelled now, a body that then returned without
            # another await would leave the cancellation to strike its caller's next await.
            asyncio.get_running_loop().call_soon(self._cancel, runner)
        else:
            self._cancel(runner)

    def _cancel(self, runner: asyncio.Task[Any]) -> None:
        if self.runner is runner:  # still running the body
            self.cancels += 1
            runner.cancel()

    def take_back_cancels(self, task: asyncio.Task[Any]) -> int:
        """Take back the cancellations of ``task`` that ``stop`` requested; how many others remain."""
        remaining = task.cancelling()
        while self.cancels:
            self.cancels -= 1
            remaining = task.uncancel()
        return remaining

    def next_key(self, base: str) -> str:
        """The key of the next call of ``base`` in the current scope (taken at call time)."""
        return self.keys.next_key(_scope.get(), base)

    def next_step_id(self, name: str) -> str:
        """python-durable 0.2's name for ``next_key``: ``name``, then ``name#1``, ``name#2``, ...

        Like there, it counts the calls of ``name``: a task of that name called afterwards gets
        the next key. Characters that structure keys (``# @ / %``) are escaped.
        """
        from durable._keys import escape

        return self.next_key(escape(name))

    async def write(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run a store write, retrying while the store is unavailable, for ``STORE_WRITE_BUDGET``.

        The retry repeats only the write: a task body whose result is being
        checkpointed is never executed again because its checkpoint write failed.
        """
        give_up = time.monotonic() + STORE_WRITE_BUDGET
        delay = 0.05
        while True:
            try:
                return await op()
            except StoreUnavailable:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)

    async def step(
        self,
        base: str,
        fn: Callable[[], Awaitable[T]],
        *,
        args_digest_of: Any = None,
        retries: int = 0,
        backoff: BackoffStrategy | None = None,
        retry_on: tuple[type[BaseException], ...] | None = None,
        timeout: float | None = None,
        encode: Callable[[T], Any] | None = None,
        decode: Callable[[Any], T] | None = None,
    ) -> T:
        """Run ``fn`` as a checkpointed step keyed ``base`` (``base#1``, ... on later calls).

        On replay the recorded value is decoded and ``fn`` is not called. ``encode``
        maps the value to JSON-compatible data and ``decode`` maps it back; both
        default to durable's codec.
        """
        from durable._engine import StepPolicy, execute_step
        from durable._keys import check_id

        key = self.next_key(check_id(base, f"run {self.run_id!r}: step name"))
        policy = StepPolicy(retries=retries, backoff=backoff, retry_on=retry_on, timeout=timeout)
        to_text = _codec.dumps if encode is None else (lambda value: _codec.dumps(encode(value)))
        from_text = _codec.loads if decode is None else (lambda text: decode(_codec.loads(text)))
        return await execute_step(
            self, key, base, _codec.digest(args_digest_of), fn, policy, to_text, from_text
        )


def current_run() -> RunContext | None:
    """The run executing in this task, or ``None`` outside a workflow."""
    return _current.get()
