"""Version 1 of a shop's checkout: the code a store's runs were recorded by.

    cd examples/deploys/v1 && python shop.py     # records two checkouts that wait mid-run

``examples/deploys`` holds three releases of one module, ``shop.py``, as a team deploys them:
``v1`` (recorded the runs), ``v2`` (charges tax: it breaks the runs v1 left in flight) and
``v2_patched`` (the same change behind ``wf.patched``: old runs keep the old charge). Check a
release against the recorded runs before deploying it (README, "Changing code safely")::

    cd examples/deploys/v2 && durable replay shop:wf --store sqlite:///../v1/shop.db          # exit 1
    cd examples/deploys/v2_patched && durable replay shop:wf --store sqlite:///../v1/shop.db  # exit 0

The store is $DURABLE_STORE, else shop.db here. Nothing leaves the machine: the tasks print.
"""

from __future__ import annotations

import asyncio
import os

from durable import Workflow

wf = Workflow("shop", db=os.environ.get("DURABLE_STORE", "sqlite:///shop.db"), version="1.0")


@wf.task
async def reserve(order_id: str) -> str:
    print(f"  reserve {order_id} (executing)")
    return f"shelf-{order_id}"


@wf.task
async def charge(order_id: str, cents: int) -> int:
    print(f"  charge {order_id}: {cents} cents (executing)")
    return cents


@wf.task
async def notify(order_id: str, cents: int) -> None:
    print(f"  notify {order_id}: charged {cents} cents (executing)")


@wf.workflow(id="order-{order_id}")
async def checkout(order_id: str, cents: int) -> int:
    await reserve(order_id)
    if cents >= 10_000:
        await wf.signal("approval")  # large orders wait for a manager before the charge
    charged = await charge(order_id, cents)
    await wf.signal("shipped")
    await notify(order_id, charged)
    return charged


async def record() -> None:
    """Start two checkouts and let a worker take each to its first wait: order-1 is charged and
    waits to be shipped, order-2 waits for approval before its charge."""
    async with wf:
        ids = [await checkout.start("1", 2_500), await checkout.start("2", 25_000)]
        stop = asyncio.Event()
        worker = asyncio.create_task(wf.worker(poll_interval=0.05).run(stop))
        while True:
            runs = [await wf.get_run(run_id) for run_id in ids]
            if all(run is not None and run.status.value == "waiting" for run in runs):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await worker
        for run_id in ids:
            steps = ", ".join(step.key for step in await wf.get_steps(run_id))
            print(f"{run_id} waits; recorded: {steps}")


if __name__ == "__main__":
    asyncio.run(record())
