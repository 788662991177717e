"""Events and streams out of a running run (``Capability.STREAMS``; docs/STREAMS.md).

Writers run inside a run. In the workflow body each write is a step of the journal (keyed
``durable:event@KEY`` / ``durable:stream@KEY`` / ``durable:close@KEY``, numbered like any step), so
a replay skips it; a stream append also carries its step key as the store's ``write_id``, so an
append whose checkpoint was lost to a crash is not repeated either: exactly once per run. In a task
body the write goes straight to the store and is repeated if the task is (at least once).

Readers run anywhere. They enter the store's ``watch_output`` before reading, so a write wakes them
(the store's notification path), and re-read at a safety-net interval in case a wake-up was lost.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

from durable import _codec, _keys
from durable._decode import decode_failure
from durable._engine import StepPolicy, execute_step
from durable.context import RunContext, _scope, current_run
from durable.errors import ConfigurationError, SerializationError, UnknownRunError
from durable.store import Capability, RunStatus, Store

EVENT_TASK = "durable:event"
STREAM_TASK = "durable:stream"
CLOSE_TASK = "durable:close"
OUTPUT_TASKS = frozenset({EVENT_TASK, STREAM_TASK, CLOSE_TASK})
"""The journal's write steps; a fork does not copy them (its replay writes its own)."""

SAFETY_NET = 5.0
"""Seconds a reader of a ``notify`` store waits between reads when nothing woke it: a lost
notification costs at most this. Stores without ``notify`` are re-read every ``poll_interval``."""


def require_streams(store: Store, what: str) -> None:
    """Refuse a store that does not declare ``Capability.STREAMS``, naming it and the capability."""
    if Capability.STREAMS not in store.capabilities:
        raise ConfigurationError(
            f"{what}: {store!r} does not declare the {Capability.STREAMS!r} capability; events and "
            "streams need a store that keeps them (docs/STREAMS.md)"
        )


def _writer(what: str, key: object) -> tuple[RunContext, str]:
    ctx = current_run()
    if ctx is None:
        raise ConfigurationError(f"{what} must be awaited inside a workflow run (its body or a task's)")
    if not isinstance(key, str) or not key:
        raise ConfigurationError(
            f"run {ctx.run_id!r}: {what}: key must be a non-empty str, got {key!r}", run_id=ctx.run_id
        )
    name = _keys.check_id(key, f"run {ctx.run_id!r}: {what}: key")
    if not ctx.replay_only:  # a replay check reads the journal only (its store keeps no streams)
        require_streams(ctx.store, f"run {ctx.run_id!r}: {what}")
    return ctx, name


def _encode(ctx: RunContext, what: str, value: Any) -> str:
    try:
        return _codec.dumps(value)
    except Exception as exc:
        raise SerializationError(
            f"run {ctx.run_id!r} {what}: value cannot be stored: {exc}", run_id=ctx.run_id
        ) from exc


def _in_task_body() -> bool:
    return bool(_scope.get())  # a step body runs with its key as the scope; the workflow body with ""


async def _journaled(ctx: RunContext, kind: str, task: str, key: str, write: Any) -> Any:
    step_key = ctx.next_key(_keys.system_base(kind, key))

    async def run() -> Any:
        return await ctx.write(lambda: write(step_key))

    # The digest is the key alone: a value computed from the clock must still replay.
    return await execute_step(
        ctx, step_key, task, _codec.digest(key), run, StepPolicy(), _codec.dumps, _codec.loads
    )


async def set_event(key: str, value: Any) -> None:
    ctx, key = _writer("wf.set_event()", key)
    text = _encode(ctx, f"event {key!r}", value)
    store, lease = ctx.store, ctx.lease
    if _in_task_body():
        await ctx.write(lambda: store.set_event(lease, key, text))
        return
    await _journaled(ctx, "event", EVENT_TASK, key, lambda _: store.set_event(lease, key, text))


async def write_stream(key: str, value: Any) -> int:
    ctx, key = _writer("wf.write_stream()", key)
    text = _encode(ctx, f"stream {key!r}", value)
    store, lease = ctx.store, ctx.lease

    async def append(write_id: str | None) -> int:
        offset = await store.append_stream(lease, key, text, write_id=write_id)
        if offset is None:
            raise ConfigurationError(
                f"run {ctx.run_id!r}: wf.write_stream({key!r}): the stream is closed (wf.close_stream)",
                run_id=ctx.run_id,
            )
        return offset

    if _in_task_body():
        return await ctx.write(lambda: append(None))
    offset: int = await _journaled(ctx, "stream", STREAM_TASK, key, append)
    return offset


async def close_stream(key: str) -> None:
    ctx, key = _writer("wf.close_stream()", key)
    store, lease = ctx.store, ctx.lease
    if _in_task_body():
        await ctx.write(lambda: store.close_stream(lease, key))
        return
    await _journaled(ctx, "close", CLOSE_TASK, key, lambda _: store.close_stream(lease, key))


def _decode(store: Store, run_id: str, field: str, text: str) -> Any:
    try:
        return _codec.loads(text)
    except _codec.Unreadable as exc:
        raise decode_failure(repr(store), run_id, field, exc) from exc


def _interval(store: Store) -> float:
    return SAFETY_NET if Capability.NOTIFY in store.capabilities else store.poll_interval


async def _known(store: Store, run_id: str, what: str) -> bool:
    """Whether the run has ended: completed, cancelled, or failed (``UnknownRunError`` if there is
    no such run). A failed run writes nothing more unless someone resumes it, and a reader waiting
    on it (a web page relaying an agent whose run failed) should end rather than hang; a reader
    of a resumed run starts again from its last offset. A store that wakes readers only on the
    first two (docs/STREAMS.md) lets them learn of a failure at their next re-read (``_interval``)."""
    run = await store.get_run(run_id)
    if run is None:
        raise UnknownRunError(f"{what}: no run {run_id!r} in {store!r}", run_id=run_id)
    return run.status.is_final or run.status is RunStatus.FAILED


async def get_events(store: Store, run_id: str) -> dict[str, Any]:
    require_streams(store, f"wf.get_events({run_id!r})")
    return {
        key: _decode(store, run_id, f"event {key!r}", text)
        for key, text in (await store.get_events(run_id)).items()
    }


async def get_event(store: Store, run_id: str, key: str, timeout: float | None, default: Any) -> Any:
    what = f"wf.get_event({run_id!r}, {key!r})"
    require_streams(store, what)
    _check_timeout(what, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    async with store.watch_output(run_id) as watch:
        while True:
            final = await _known(store, run_id, what)  # before the events: one set before the end is seen
            events = await store.get_events(run_id)
            if key in events:
                return _decode(store, run_id, f"event {key!r}", events[key])
            left = None if deadline is None else deadline - time.monotonic()
            if final or (left is not None and left <= 0):
                return default
            await watch.wait(_interval(store) if left is None else min(left, _interval(store)))


async def read_stream(
    store: Store, run_id: str, key: str, offset: int, timeout: float | None
) -> AsyncGenerator[tuple[int, Any], None]:
    # aclosing: a caller leaving early closes the inner reader (and its watch) at once, not at GC.
    async with contextlib.aclosing(read_stream_text(store, run_id, key, offset, timeout)) as items:
        async for at, text in items:
            yield at, _decode(store, run_id, f"stream {key!r} item {at}", text)


async def read_stream_text(
    store: Store, run_id: str, key: str, offset: int, timeout: float | None, what: str | None = None
) -> AsyncGenerator[tuple[int, str], None]:
    """``read_stream`` with each item's stored JSON text, undecoded (``durable stream`` shows
    that text: the classes a value names need not be importable where it is shown)."""
    what = what or f"wf.read_stream({run_id!r}, {key!r})"
    require_streams(store, what)
    _check_timeout(what, timeout)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ConfigurationError(f"{what}: offset must be an int >= 0, got {offset!r}", run_id=run_id)
    idle_until = None if timeout is None else time.monotonic() + timeout
    first = True
    async with store.watch_output(run_id) as watch:
        while True:
            try:
                final = await _known(store, run_id, what)  # before the items: the last ones are read
            except UnknownRunError:
                if first:
                    raise
                return  # deleted while read (pruned): nothing more will come
            first = False
            chunk = await store.read_stream(run_id, key, offset)
            for at, text in chunk.items:
                yield at, text
                offset = at + 1
            if chunk.items:
                if timeout is not None:
                    idle_until = time.monotonic() + timeout
                continue  # more may be there already (a read returns at most its limit)
            if chunk.closed or final:
                return
            left = None if idle_until is None else idle_until - time.monotonic()
            if left is not None and left <= 0:
                return
            await watch.wait(_interval(store) if left is None else min(left, _interval(store)))


def _check_timeout(what: str, timeout: object) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
    ):
        raise ConfigurationError(f"{what}: timeout must be a number of seconds >= 0 or None, got {timeout!r}")
