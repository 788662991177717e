"""Queue claimers for the queue concern: a claim loop (run in this process or another), and
``python -m durable_contract_tests._queue_claimers HEX`` running one over a pickled blueprint.

A claimer prints (or returns) ``claimed RUN T`` right after a claim returned and ``released RUN T``
right before giving the run back (``T``: ``time.time()``): each printed interval lies inside the
time the store held the lease, so intervals that overlap more than the limit prove a store wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from durable.store import QueueLimits, RunStatus, Store
from durable_contract_tests import _child_process

READY = _child_process.READY


@dataclass(frozen=True)
class ClaimUntilEmpty:
    """Claim runs of ``queue`` one at a time, hold each ``hold`` seconds, complete it; stop after
    ``idle`` seconds without a claim."""

    queue: str
    owner: str
    limits: QueueLimits
    hold: float
    idle: float = 1.0
    lease_seconds: float = 30.0


@dataclass(frozen=True)
class ClaimAndHang:
    """Claim one run of ``queue`` with a ``lease_seconds`` lease, print it, then hang (to be killed)."""

    queue: str
    owner: str
    limits: QueueLimits
    lease_seconds: float


async def claim_until_empty(store: Store, order: ClaimUntilEmpty, say: Callable[[str], None]) -> None:
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < order.idle:
        taken = await store.claim_queued(
            order.queue, time.time(), order.owner, order.lease_seconds, order.limits, limit=1
        )
        if not taken:
            await asyncio.sleep(0.005)
            continue
        ((run, lease),) = taken
        say(f"claimed {run.run_id} {time.time()!r}")
        await asyncio.sleep(order.hold)
        say(f"released {run.run_id} {time.time()!r}")
        await store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True)
        quiet_since = time.monotonic()


def command(order: object, blueprint: bytes) -> list[str]:
    return _child_process.command(__name__, order, blueprint)


async def _main(store: Store, order: object) -> None:
    say = _child_process.say
    say(READY)
    if isinstance(order, ClaimUntilEmpty):
        await claim_until_empty(store, order, say)
    elif isinstance(order, ClaimAndHang):
        while True:
            taken = await store.claim_queued(
                order.queue, time.time(), order.owner, order.lease_seconds, order.limits
            )
            if taken:
                say(f"claimed {taken[0][0].run_id}")
                await asyncio.sleep(3600)
            await asyncio.sleep(0.01)
    else:
        raise TypeError(f"unknown order {order!r}")


def main() -> None:
    from durable_contract_tests import _queue_claimers  # the module's _main, not __main__'s

    _child_process.serve(_queue_claimers._main)


if __name__ == "__main__":
    main()
