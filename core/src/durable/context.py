"""The state of the run executing in the current task, and the step API built on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from durable import _codec
from durable._keys import KeyCounter
from durable.backoff import BackoffStrategy
from durable.errors import StoreUnavailable
from durable.store import Lease, StepRecord, Store

if TYPE_CHECKING:
    from durable.workflow import Workflow

__all__ = ["RunContext", "current_run"]

T = TypeVar("T")

_current: ContextVar[RunContext | None] = ContextVar("durable_run", default=None)
_scope: ContextVar[str] = ContextVar("durable_scope", default="")

STORE_WRITE_ATTEMPTS = 6


@dataclass(eq=False)
class RunContext:
    """One executing run: its store, lease, journal and key counters."""

    workflow: Workflow
    workflow_name: str
    run_id: str
    store: Store
    lease: Lease
    journal: dict[str, StepRecord]
    keys: KeyCounter = field(default_factory=KeyCounter)
    signal_counts: dict[str, int] = field(default_factory=dict)
    parkable: bool = False
    """Waits may release the process (the run is executed by a worker)."""
    stop_reason: BaseException | None = None
    """Why the run was stopped from outside its body (cancelled, lease lost, deadline)."""
    runner: asyncio.Task[Any] | None = None
    """The task running the body, while it runs (see ``execute_run``)."""
    cancels: int = 0
    """Cancellations of ``runner`` that ``stop`` requested and ``execute_run`` has not taken back."""

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

    async def write(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run a store write, retrying while the store is unavailable.

        The retry repeats only the write: a task body whose result is being
        checkpointed is never executed again because its checkpoint write failed.
        """
        for attempt in range(1, STORE_WRITE_ATTEMPTS + 1):
            try:
                return await op()
            except StoreUnavailable:
                if attempt == STORE_WRITE_ATTEMPTS:
                    raise
                await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

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

        key = self.next_key(base)
        policy = StepPolicy(retries=retries, backoff=backoff, retry_on=retry_on, timeout=timeout)
        to_text = _codec.dumps if encode is None else (lambda value: _codec.dumps(encode(value)))
        from_text = _codec.loads if decode is None else (lambda text: decode(_codec.loads(text)))
        return await execute_step(
            self, key, base, _codec.digest(args_digest_of), fn, policy, to_text, from_text
        )


def current_run() -> RunContext | None:
    """The run executing in this task, or ``None`` outside a workflow."""
    return _current.get()
