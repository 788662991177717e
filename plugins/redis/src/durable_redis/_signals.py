"""Signals of ``RedisStore`` (``send_signal``, ``list_signals``, ``wait_for_signal``): a base class
of it. A delivery is recorded once by a script that publishes it; waiters are woken by the store's
subscription (``_notify``) and re-read at the polling pace while it is down.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from durable._decode import decode_failure
from durable.errors import StoreUnavailable
from durable.store import SignalRecord
from durable_redis import _keys as k
from durable_redis._calls import Call

if TYPE_CHECKING:
    from durable_redis._notify import Notifier

_SAFETY_RECHECK = 30.0
"""Even with a healthy subscription, a waiter re-reads its deliveries this often."""


class SignalMethods:
    """``send_signal``, ``list_signals`` and ``wait_for_signal`` of ``RedisStore`` (a base class of
    it, before ``Store``)."""

    keys: k.KeySpace
    clock: Callable[[], float]
    label: str
    poll_interval: float
    _notifier: Notifier | None

    if TYPE_CHECKING:

        @property
        def client(self) -> Any: ...

        async def _script(self, call: Call, run_id: str, field: str = "run") -> Any: ...
        def _ttl_ms(self) -> int: ...

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        keys = self.keys.run_keys(run_id)
        keys.append(self.keys.live)
        args = [
            k.delivery_field(name, delivery_id),
            secrets.token_hex(8),
            # sent_at is the sender's clock; the waiting run's wake time is the server's (script).
            k.encode_signal_body(name, delivery_id, payload, self.clock()),
            self._ttl_ms(),
            self.keys.channel,
            k.notice(run_id, name),
        ]
        what = f"sending signal {name!r} to run {run_id!r}"
        recorded = await self._script(Call(what, keys, args, script="send_signal"), run_id, "signals")
        return bool(recorded)

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        key = self.keys.run_keys(run_id)[2]
        what = f"listing the signals of run {run_id!r}"
        entries: list[str] = await self._script(Call.plain(what, "LRANGE", key, 0, -1), run_id, "signals")
        deliveries = [self._signal(run_id, position, entry) for position, entry in enumerate(entries)]
        return [d for d in deliveries if name is None or d.name == name]

    def _signal(self, run_id: str, position: int, entry: str) -> SignalRecord:
        try:
            return k.decode_signal(run_id, entry)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise decode_failure(self.label, run_id, f"signals[{position}]", exc) from exc

    async def wait_for_signal(
        self, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        self.client  # noqa: B018 - raises a clear error when the store is not open
        notifier = self._notifier
        assert notifier is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        event = await notifier.register(run_id, name)
        try:
            while True:
                # Cleared before reading: a delivery published during the read still wakes us.
                event.clear()
                try:
                    deliveries = await self.list_signals(run_id, name)
                except StoreUnavailable as exc:
                    # An outage: the wait goes on, re-reading at the polling pace (the heartbeat
                    # stops the run if its lease is lost meanwhile); at the deadline it is raised.
                    failure: StoreUnavailable | None = exc
                else:
                    failure = None
                    if len(deliveries) > index:
                        return deliveries[index]
                pause = _SAFETY_RECHECK if notifier.healthy and failure is None else self.poll_interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        if failure is not None:
                            raise failure
                        return None
                    pause = min(pause, remaining)
                try:
                    await asyncio.wait_for(event.wait(), pause)
                except TimeoutError:
                    pass
        finally:
            notifier.unregister(run_id, name, event)
