"""Signals of the Postgres store: ``send_signal`` (one statement that records the delivery once
and NOTIFYs), ``list_signals`` and ``wait_for_signal`` (woken by the LISTEN connection).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any

from asyncpg import Record

from durable.errors import StoreUnavailable
from durable.store import SignalRecord
from durable_postgres import _sql
from durable_postgres._calls import PostgresCalls
from durable_postgres._listener import wake_key

if TYPE_CHECKING:
    from durable_postgres._conns import Conn

SAFETY_POLL = 5.0
"""While the LISTEN connection is up, waiters still re-check this often, in case a NOTIFY is lost."""


def _signal(row: Record | tuple[Any, ...]) -> SignalRecord:
    return SignalRecord(row[0], row[1], row[2], row[3], row[4], row[5])


class PostgresSignals(PostgresCalls):
    """The signals part of ``PostgresStore``."""

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        sender = secrets.token_hex(8)
        key = wake_key(run_id, name)
        args = (run_id, name, delivery_id, payload, sender, _sql.SIGNAL_LOCK_SPACE, self._channel, key)

        async def op(conn: Conn) -> bool:
            return bool(await conn.fetchval(self._sql["send_signal"], *args))

        async def retry(conn: Conn) -> bool:
            if await op(conn):
                return True
            # A duplicate carrying this call's sender id is the lost first attempt's own row.
            return bool(await conn.fetchval(self._sql["sent_by"], run_id, name, delivery_id, sender))

        recorded = await self._call(f"send signal {name!r} to run {run_id!r}", op, retry)
        if recorded and self._listener is not None:
            self._listener.wake(key)  # waiters in this process need not wait for the NOTIFY
        return recorded

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        if name is None:
            rows = await self._call(
                f"list the signals of run {run_id!r}", lambda conn: conn.fetch(self._sql["signals"], run_id)
            )
        else:
            rows = await self._call(
                f"list signal {name!r} of run {run_id!r}",
                lambda conn: conn.fetch(self._sql["signals_named"], run_id, name),
            )
        return [_signal(row) for row in rows]

    async def wait_for_signal(
        self, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        """Wait on the store's LISTEN connection; while that is down, poll every ``poll_interval``.

        An outage does not end the wait: it re-reads at the polling pace until its deadline, where
        the last ``StoreUnavailable`` is raised (the heartbeat stops the run meanwhile if its lease
        is lost)."""
        listener = self._listener
        if listener is None:
            raise StoreUnavailable(f"{self!r} is not open (call open(), or use it through a Workflow)")
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = 0.005
        with listener.waiting(wake_key(run_id, name)) as event:
            while True:
                # LISTEN before looking, so a delivery between the look and the wait still wakes us.
                listening = await listener.ensure()
                event.clear()
                failure: StoreUnavailable | None = None
                try:
                    row = await self._call(
                        f"read signal {name!r} of run {run_id!r}",
                        lambda conn: conn.fetchrow(self._sql["nth_signal"], run_id, name, index),
                    )
                except StoreUnavailable as exc:
                    failure, row = exc, None
                if row is not None:
                    return _signal(row)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if failure is not None:
                        raise failure
                    return None
                if listening and failure is None:
                    wait = SAFETY_POLL
                else:
                    wait, interval = interval, min(interval * 2, self.poll_interval)
                if remaining is not None:
                    wait = min(wait, remaining)
                try:
                    await asyncio.wait_for(event.wait(), wait)
                except TimeoutError:
                    pass
