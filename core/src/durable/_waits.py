"""Durable waits inside a run: signals and sleeps, both recorded in the journal."""

from __future__ import annotations

import datetime as dt
from typing import Any

from durable import _clock, _codec, _keys, _lifecycle
from durable._decode import decode_failure
from durable._engine import Park, StepPolicy, execute_step
from durable._records import RunStatus
from durable.context import RunContext, current_run
from durable.errors import ConfigurationError, SignalTimeout

SIGNAL_TASK = "durable:signal"
SLEEP_TASK = "durable:sleep"
PARK_AFTER = 1.0
"""A worker-driven run parks (releases its process) for sleeps longer than this many seconds."""


def _require_run(what: str) -> RunContext:
    ctx = current_run()
    if ctx is None:
        raise ConfigurationError(f"{what} must be awaited inside a workflow run")
    return ctx


async def wait_for_signal(name: str, timeout: float | None) -> Any:
    """The n-th wait on ``name`` in a run receives the n-th delivery of ``name``.

    The delivery (or the timeout) is checkpointed, so a replay returns it at once.
    In a run driven by a worker, a wait without timeout parks the run until the
    signal arrives; otherwise the process waits, holding the run's lease.
    """
    ctx = _require_run(f"wf.signal({name!r})")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"run {ctx.run_id!r}: signal name must be a non-empty str, got {name!r}")
    index = ctx.signal_counts.get(name, 0)
    ctx.signal_counts[name] = index + 1
    key = ctx.next_key(_keys.system_base("signal", name))

    async def receive() -> dict[str, Any]:
        store = ctx.store
        deliveries = await store.list_signals(ctx.run_id, name)
        if len(deliveries) > index:
            delivery = deliveries[index]
        elif ctx.parkable and timeout is None:
            raise Park(None, signal=(name, index))
        else:
            await ctx.update(RunStatus.WAITING, activity=_lifecycle.waiting_for_signal(name, timeout))
            found = await _clock.wait_for_signal(store, ctx.run_id, name, index, timeout)
            await ctx.update(RunStatus.RUNNING)
            if found is None:
                return {"timeout": timeout}
            delivery = found
        try:
            payload = _codec.loads(delivery.payload)
        except _codec.Unreadable as exc:
            field = f"signal {name!r} delivery {delivery.delivery_id!r}: payload"
            raise decode_failure(repr(store), ctx.run_id, field, exc) from exc
        return {"payload": payload, "seq": delivery.seq}

    outcome = await execute_step(
        ctx, key, SIGNAL_TASK, _codec.digest([name, index]), receive, StepPolicy(), _codec.dumps, _codec.loads
    )
    if "timeout" in outcome:
        raise SignalTimeout(
            f"run {ctx.run_id!r}: no signal {name!r} arrived within {timeout} seconds",
            run_id=ctx.run_id,
            step_key=key,
        )
    return outcome["payload"]


async def sleep_until(when: float | dt.datetime) -> None:
    """Sleep until an absolute time; the wake time is checkpointed on the first pass,
    so after a crash the run wakes at the original time, not later."""
    ctx = _require_run("wf.sleep()")
    wake_at = when.timestamp() if isinstance(when, dt.datetime) else float(when)
    key = ctx.next_key(_keys.system_base("sleep"))

    async def record() -> float:
        return wake_at

    # The digest ignores the time itself: a sleep computed from now() must still replay.
    recorded: float = await execute_step(
        ctx, key, SLEEP_TASK, _codec.digest(None), record, StepPolicy(), _codec.dumps, _codec.loads
    )
    remaining = recorded - _clock.now()
    if remaining <= 0:
        return
    if remaining <= PARK_AFTER:
        await _clock.sleep(remaining)
        return
    if ctx.parkable:
        _clock.expect(recorded)  # a worker polls for it: virtual time may jump there
        raise Park(recorded)
    # A long sleep in this process, holding the lease: say what the run waits for meanwhile.
    await ctx.update(RunStatus.WAITING, wake_at=recorded, activity=_lifecycle.sleeping_until(recorded))
    await _clock.sleep(max(0.0, recorded - _clock.now()))
    await ctx.update(RunStatus.RUNNING)


async def sleep(seconds: float) -> None:
    if seconds < 0:
        raise ConfigurationError(f"wf.sleep({seconds}): seconds must be >= 0")
    await sleep_until(_clock.now() + seconds)
