"""One writer process of the two-process contract test.

Reads a pickled ``(store_bytes, Order)`` from stdin, where ``store_bytes`` is a pickled unopened store
or store URL from the parent, writes what the order says at ``start_at``, and prints a JSON report
(its last stdout line). Errors are reported, not raised, so the parent can show them all.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

from durable.store import RunStatus, Store
from durable_contract_tests._kit import lease_of, make_run, make_step


@dataclass(frozen=True)
class Order:
    name: str
    start_at: float
    runs: int
    steps: int
    signals: int
    shared_run: str


async def _one_run(store: Store, order: Order, i: int) -> None:
    run, created = await store.create_run(make_run(f"{order.name}-{i}", "two-process", owner=order.name))
    if not created:
        raise AssertionError(f"run {run.run_id!r} existed before this process created it")
    lease = lease_of(run)
    for j in range(order.steps):
        await store.save_step(lease, make_step(run.run_id, f"s{j}", json.dumps([i, j])))
    await store.update_run(lease, RunStatus.COMPLETED, result=json.dumps(i), release=True)


async def _signals(store: Store, order: Order) -> None:
    # Sequential on purpose: this process's deliveries must keep their order in the shared run.
    for j in range(order.signals):
        if not await store.send_signal(order.shared_run, "note", f"{order.name}-{j}", str(j)):
            raise AssertionError(f"delivery {order.name}-{j} was reported as a duplicate")


async def _contested(store: Store, order: Order) -> bool:
    run, created = await store.create_run(make_run("contested", "two-process", owner=order.name))
    if created:
        lease = lease_of(run)
        await store.save_step(lease, make_step("contested", "only", json.dumps(order.name)))
        await store.update_run(lease, RunStatus.COMPLETED, result="null", release=True)
    return created


async def work(store: Store, order: Order) -> dict[str, Any]:
    errors: list[str] = []
    created_contested = False
    await store.open()
    try:
        await asyncio.sleep(max(0.0, order.start_at - time.time()))
        jobs = [_contested(store, order), _signals(store, order)]
        jobs += [_one_run(store, order, i) for i in range(order.runs)]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                errors.append("".join(traceback.format_exception(result)))
        created_contested = results[0] is True
    finally:
        await store.close()
    return {"errors": errors, "created_contested": created_contested}


def main() -> None:
    store_bytes, order = pickle.loads(sys.stdin.buffer.read())
    recipe = pickle.loads(store_bytes)
    if isinstance(recipe, str):
        from durable._plugins import get_plugin_manager

        store = get_plugin_manager().store_from_url(recipe)
    else:
        store = recipe
    report = asyncio.run(work(store, order))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
