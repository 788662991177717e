"""Version 2 of the checkout behind a patch (see ../v1/shop.py): safe to deploy over version 1.

A run reaching the charge for the first time takes the new branch (tax) and records the patch;
a run version 1 already charged replays the old branch, so its recorded charge matches.
``durable replay shop:wf`` exits 0 against the runs version 1 recorded. Once no run that took
the old branch remains, ``wf.deprecate_patch("tax")`` replaces the ``if`` and the old branch goes.
"""

from __future__ import annotations

import os

from durable import Workflow

wf = Workflow("shop", db=os.environ.get("DURABLE_STORE", "sqlite:///shop.db"), version="2.0.1")
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
    if await wf.patched("tax"):
        charged = await charge(order_id, round(cents * (1 + TAX)))
    else:
        charged = await charge(order_id, cents)
    await wf.signal("shipped")
    await notify(order_id, charged)
    return charged
