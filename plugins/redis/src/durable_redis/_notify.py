"""Signal wake-ups: one pub/sub connection per store, dispatching to the local waiters.

The ``send_signal`` script publishes ``[run_id, name]`` on the prefix's channel in the same
atomic step as the write, so a waiter subscribed before it last read the deliveries cannot
miss one. The queue scripts publish ``[queue]`` (``wait_for_queues``), and the scripts that change
a run's events or streams, give it a final status or delete it publish ``{"o": run_id}``, which
is handed to ``on_output`` (the store's ``wake_output_waiters``).

While the subscription is down, waiters fall back to polling (``healthy`` is False) and every
change of that state wakes them all so they re-read what they may have missed.

A subscription whose connection died silently (a partition, a NAT or proxy that forgot it, a
server gone without a reset) receives nothing and raises nothing, so the listener pings it
after ``PING_IDLE`` seconds without a message and counts it lost when no reply comes within
``timeout``: then it subscribes again on a fresh connection, and the waiters re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from durable_redis._keys import OutputNotice, parse_notice

log = logging.getLogger("durable_redis")

SUBSCRIBE_WAIT = 2.0
"""How long a first waiter waits for the subscription before it starts out polling."""
PING_IDLE = 2.0
"""Seconds without a message after which the subscription is pinged."""


class SilentSubscription(ConnectionError):
    """The subscription's connection did not answer a ping in time."""


class Notifier:
    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        timeout: float = 5.0,
        on_output: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._timeout = timeout
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = {}
        self._queues: dict[str, set[asyncio.Event]] = {}
        """Queue name -> events of ``wait_for_queues`` callers (the queue scripts publish ``[queue]``)."""
        self._on_output = on_output
        self.origin = secrets.token_hex(8)
        """Names this store object in the output notices it publishes: it woke its own readers
        when it wrote, so its own notices, heard later, are not handed to ``on_output`` (they
        would wake a watch begun since, for nothing)."""
        self._outputs: Counter[str] = Counter()
        """Run id -> how many ``watch_output`` watchers of it there are: woken when the
        subscription's state changes (they may have missed a notice)."""
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.healthy = False

    async def register(self, run_id: str, name: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault((run_id, name), set()).add(event)
        await self._subscription()
        return event

    def watch_outputs(self, run_id: str) -> None:
        self._outputs[run_id] += 1

    def unwatch_outputs(self, run_id: str) -> None:
        self._outputs[run_id] -= 1
        if self._outputs[run_id] <= 0:
            del self._outputs[run_id]

    async def listening(self) -> None:
        """Start listening if no one did yet; wait a while for the subscription if it is down."""
        await self._subscription()

    async def _subscription(self) -> None:
        """Start listening if no one did yet; wait a while for the subscription if it is down."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="durable-redis-notify")
        if not self.healthy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), SUBSCRIBE_WAIT)

    async def register_queues(self, queues: Iterable[str], event: asyncio.Event) -> None:
        """Set ``event`` when a run of one of ``queues`` may have become claimable."""
        for queue in queues:
            self._queues.setdefault(queue, set()).add(event)
        await self._subscription()

    def unregister_queues(self, queues: Iterable[str], event: asyncio.Event) -> None:
        for queue in queues:
            waiters = self._queues.get(queue)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._queues[queue]

    def unregister(self, run_id: str, name: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get((run_id, name))
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[(run_id, name)]

    def _wake_all(self) -> None:
        for waiters in [*self._waiters.values(), *self._queues.values()]:
            for event in waiters:
                event.set()
        if self._on_output is not None:
            for run_id in list(self._outputs):
                self._on_output(run_id)

    def _set_health(self, healthy: bool) -> None:
        if healthy != self.healthy:
            self.healthy = healthy
            if healthy:
                self._subscribed.set()
            else:
                self._subscribed.clear()
            self._wake_all()

    async def _listen(self) -> None:
        me = asyncio.current_task()
        delay = 0.05
        while True:
            pubsub = self._client.pubsub()
            try:
                async with asyncio.timeout(self._timeout):
                    await pubsub.subscribe(self._channel)
                heard = asyncio.get_running_loop().time()
                pinged: float | None = None
                while True:
                    message: dict[str, Any] | None = await pubsub.get_message(timeout=min(1.0, PING_IDLE))
                    if me is not None and me.cancelling():
                        # A client whose read swallowed our cancellation (fakeredis's does) would
                        # keep this loop, and whoever cancels it (an event loop closing), waiting.
                        raise asyncio.CancelledError
                    now = asyncio.get_running_loop().time()
                    if message is None:
                        if pinged is not None and now - pinged > self._timeout:
                            raise SilentSubscription(f"no reply to a ping within {self._timeout:g} s")
                        if pinged is None and now - heard > PING_IDLE:
                            async with asyncio.timeout(self._timeout):
                                await pubsub.ping()
                            pinged = now
                        continue
                    heard, pinged = now, None
                    if message["type"] == "subscribe":
                        self._set_health(True)
                        delay = 0.05
                    elif message["type"] == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("durable-redis: signal subscription lost (%s); polling until it is back", exc)
                self._set_health(False)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _dispatch(self, data: str) -> None:
        try:
            key = parse_notice(data)
        except (ValueError, TypeError, KeyError):
            return
        if isinstance(key, OutputNotice):
            if self._on_output is not None and key.origin != self.origin:
                self._on_output(key.run_id)
            return
        waiters = self._queues.get(key, ()) if isinstance(key, str) else self._waiters.get(key, ())
        for event in waiters:
            event.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._set_health(False)
