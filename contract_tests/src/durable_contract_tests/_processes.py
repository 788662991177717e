"""Other processes of the contract tests: one that sends a signal on cue, one that appends to a
stream on cue, one that writes until
stopped (or killed), each over a store sent as a pickled blueprint (see ``StoreHarness.blueprint``).

``python -m durable_contract_tests._processes HEX`` runs the order pickled in ``HEX`` (argv keeps
stdin free for cues). Every line it prints is flushed at once: the parent reads a write's
acknowledgement as soon as the store has returned from it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

from durable.store import Lease, RunStatus, Store
from durable_contract_tests import _child_process
from durable_contract_tests._kit import make_step

READY = _child_process.READY
_say = _child_process.say


@dataclass(frozen=True)
class SendOnCue:
    """Open the store, print ``ready``, and at each line read from stdin send one delivery."""

    run_id: str
    name: str


@dataclass(frozen=True)
class AppendOnCue:
    """Open the store, print ``ready``, and at each line read from stdin append one item (its
    count, as JSON) to stream ``key`` of ``lease.run_id``, printing ``appended <offset>``."""

    lease: Lease
    key: str


@dataclass(frozen=True)
class WriteUntilStopped:
    """Open the store, print ``ready``, then write round ``n`` for ``n = first, first + 1, ...``
    until ``rounds`` are done (``None``: until killed), printing ``<kind> <n>`` after each write
    returned: ``run`` (``update_run``: result and wake time), ``step`` (``save_step``) and
    ``signal`` (``send_signal`` to ``deliveries_of(run_id)``)."""

    lease: Lease
    first: int
    rounds: int | None
    result_size: int
    step_size: int
    steps: bool = True
    signals: bool = True


def payload(n: int, size: int) -> str:
    """The JSON text written in round ``n``: says its round, padded to about ``size`` bytes."""
    return json.dumps({"n": n, "pad": "x" * size})


def round_of(text: str | None) -> int | None:
    """The round a payload says it was written in, or ``None`` if it is not one, whole."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data.get("n") if isinstance(data, dict) and isinstance(data.get("n"), int) else None


def deliveries_of(run_id: str) -> str:
    """Where the writer sends its deliveries: a run id of its own, as a delivery to the waiting run
    itself would set its wake time to now."""
    return f"{run_id}-deliveries"


def wake_of(n: int) -> float:
    """The wake time round ``n`` writes with its result: a second field that must change with it."""
    return 1_900_000_000.0 + n


def command(order: object, blueprint: bytes) -> list[str]:
    return _child_process.command(__name__, order, blueprint)


async def _send_on_cue(store: Store, order: SendOnCue) -> None:
    _say(READY)
    loop = asyncio.get_running_loop()
    count = 0
    while await loop.run_in_executor(None, sys.stdin.readline):
        await store.send_signal(order.run_id, order.name, f"cue-{count}", json.dumps(count))
        count += 1
        _say(f"sent {count}")


async def _append_on_cue(store: Store, order: AppendOnCue) -> None:
    _say(READY)
    loop = asyncio.get_running_loop()
    count = 0
    while await loop.run_in_executor(None, sys.stdin.readline):
        offset = await store.append_stream(order.lease, order.key, json.dumps(count))
        count += 1
        _say(f"appended {offset}")


async def _write(store: Store, order: WriteUntilStopped) -> None:
    lease, run_id = order.lease, order.lease.run_id
    _say(READY)
    n = order.first
    while order.rounds is None or n < order.first + order.rounds:
        result = payload(n, order.result_size)
        await store.update_run(lease, RunStatus.WAITING, result=result, wake_at=wake_of(n))
        _say(f"run {n}")
        if order.steps:
            step = make_step(run_id, f"s{n}", payload(n, order.step_size), finished_at=wake_of(n))
            await store.save_step(lease, step)
            _say(f"step {n}")
        if order.signals:
            await store.send_signal(deliveries_of(run_id), "tick", f"d{n}", payload(n, order.step_size))
            _say(f"signal {n}")
        n += 1


async def _main(store: Store, order: object) -> None:
    if isinstance(order, SendOnCue):
        await _send_on_cue(store, order)
    elif isinstance(order, AppendOnCue):
        await _append_on_cue(store, order)
    elif isinstance(order, WriteUntilStopped):
        await _write(store, order)
    else:
        raise TypeError(f"unknown order {order!r}")


def main() -> None:
    from durable_contract_tests import _processes  # the module's _main, not __main__'s

    _child_process.serve(_processes._main)


if __name__ == "__main__":
    main()
