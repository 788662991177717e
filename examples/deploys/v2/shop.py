"""Version 2 of the checkout (see ../v1/shop.py): charges tax on top of the price.

Deployed as it is, it breaks runs in flight: order-1 was charged by version 1, and resuming it
here would find that charge recorded with other arguments (``NondeterminismError``).
``durable replay shop:wf`` says so before the deploy: exit 1, naming order-1 and step ``charge``.
"""

from __future__ import annotations

import os

from durable import Workflow

wf = Workflow("shop", db=os.environ.get("DURABLE_STORE", "sqlite:///shop.db"), version="2.0")
TAX = 0.2


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
        await wf.signal("approval")
    charged = await charge(order_id, round(cents * (1 + TAX)))
    await wf.signal("shipped")
    await notify(order_id, charged)
    return charged
