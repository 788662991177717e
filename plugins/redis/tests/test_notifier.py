"""The store's pub/sub listener ends when cancelled, even over a client whose read swallows the
cancellation (fakeredis's does, and redis-py's read converts a cancel that lands as its own timeout
expires): python-durable 0.2's own Redis tests hung at event-loop teardown on it."""

from __future__ import annotations

import asyncio
from typing import Any

from durable_redis._notify import Notifier


class SwallowingPubSub:
    """Subscribes, then answers every read after its timeout, swallowing a cancel meanwhile."""

    def __init__(self) -> None:
        self.reads = 0

    async def subscribe(self, channel: str) -> None:
        self.subscribed = channel

    async def get_message(self, timeout: float) -> dict[str, Any] | None:
        self.reads += 1
        if self.reads == 1:
            return {"type": "subscribe", "data": 1}
        try:
            await asyncio.sleep(timeout)
        except asyncio.CancelledError:
            pass  # the defect this guards against
        return None

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Client:
    def __init__(self) -> None:
        self.pubsub_object = SwallowingPubSub()

    def pubsub(self) -> SwallowingPubSub:
        return self.pubsub_object


async def test_a_cancelled_listener_ends_over_a_client_that_swallows_cancellation() -> None:
    client = Client()
    notifier = Notifier(client, "durable:test")  # type: ignore[arg-type]
    await notifier._subscription()
    await asyncio.wait_for(notifier._subscribed.wait(), 5)
    await asyncio.sleep(0.05)  # inside a read now
    await asyncio.wait_for(notifier.close(), 5)  # before: for ever (each read swallowed the cancel)
    assert not notifier.healthy
