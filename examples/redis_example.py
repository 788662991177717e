"""The seed README's Redis store example, against a local Redis server.

    DURABLE_REDIS_URL=redis://127.0.0.1:6379/0 python examples/redis_example.py

Needs `pip install 'python-durable[redis]'` and a Redis server (no other network).
"""

from __future__ import annotations

import asyncio
import os
import uuid

from durable import RedisStore, Workflow

url = os.environ.get("DURABLE_REDIS_URL", "redis://localhost:6379/0")
# A unique prefix keeps repeated demo runs apart; production code keeps the default.
store = RedisStore(url=url, ttl=86400, prefix=f"durable-example-{uuid.uuid4().hex[:8]}")
wf = Workflow("my-app", db=store)
executed: list[str] = []


@wf.task
async def reserve_stock(sku: str) -> dict[str, str]:
    executed.append("reserve_stock")
    return {"sku": sku, "reservation": "r-1"}


@wf.task
async def charge_card(amount: int) -> str:
    executed.append("charge_card")
    return f"charged {amount}"


@wf.workflow(id="checkout-{order_id}")
async def checkout(order_id: str, sku: str, amount: int) -> str:
    await reserve_stock(sku)
    return await charge_card(amount)


async def main() -> None:
    print(await checkout(order_id="7", sku="pen", amount=300), "executed:", executed)
    executed.clear()
    print(await checkout(order_id="7", sku="pen", amount=300), "executed:", executed or "nothing (replayed)")
    run = await wf.get_run("checkout-7")
    assert run is not None
    print("status:", run.status.value)
    await store.delete_run("checkout-7")
    await wf.close()


if __name__ == "__main__":
    asyncio.run(main())
