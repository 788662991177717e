"""Events and streams of the Postgres store's runs (``Capability.STREAMS``, docs/STREAMS.md): the
store's calls over ``_output_sql``'s statements, and watches woken by its LISTEN connection.

Each write is one statement, notifying every process's watchers at commit; ``PostgresStore``
wakes this process's own at once (``wake_output_waiters``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from durable.errors import LeaseLost, StoreError
from durable.store import Lease, OutputWatch, StreamItems
from durable_postgres import _output_sql
from durable_postgres._batching import Caller
from durable_postgres._listener import Listener

if TYPE_CHECKING:
    from durable_postgres._conns import Conn

ANONYMOUS = "anonymous:"
"""Prefix of the random write id an append without one is given, so that a retry after a lost
connection finds the item its first attempt stored instead of appending it twice (the core's
write ids are step keys, which never start so)."""
RACES = 5
"""Appends with one write id racing this one (replays of one run) may make it start again; each
race ends with one of them stored, so a few attempts always settle it."""


class ListeningWatch(OutputWatch):
    """A watch woken through the store's LISTEN connection as well as in this process. While that
    connection is down, each wait tries to reopen it and waits at most ``poll_interval``."""

    def __init__(self, event: asyncio.Event, listener: Listener, poll_interval: Callable[[], float]) -> None:
        super().__init__()
        self.event = event  # the local watch's: wake_output_waiters and NOTIFYs set the same one
        self._listener = listener
        self._poll_interval = poll_interval

    async def wait(self, timeout: float) -> None:
        if not await self._listener.ensure():
            timeout = min(timeout, self._poll_interval())
        await super().wait(timeout)


class PostgresOutputs:
    """The outputs part of one ``PostgresStore``: its ``_call``, statements and listener."""

    def __init__(
        self,
        call: Caller,
        quoted_schema: str,
        channel: str,
        listener: Callable[[], Listener | None],
        poll_interval: Callable[[], float],
    ) -> None:
        self._call = call
        self._sql = _output_sql.statements(quoted_schema)
        self._channel = channel
        self._listener = listener
        self._poll_interval = poll_interval

    async def set_event(self, lease: Lease, key: str, value: str) -> None:
        sql, args = self._sql["set_event"], self._write_args(lease, key)
        row = await self._call(
            f"set event {key!r} of run {lease.run_id!r}", lambda conn: conn.fetchrow(sql, *args, value)
        )
        _check_fenced(lease, row)

    async def get_events(self, run_id: str) -> dict[str, str]:
        sql = self._sql["get_events"]
        rows = await self._call(f"read the events of run {run_id!r}", lambda conn: conn.fetch(sql, run_id))
        return {row[0]: row[1] for row in rows}

    async def append(self, lease: Lease, key: str, value: str, write_id: str | None) -> int | None:
        write = ANONYMOUS + secrets.token_hex(12) if write_id is None else write_id
        sql, args = self._sql["append"], (*self._write_args(lease, key), value, write)

        async def op(conn: Conn) -> Any:
            for _ in range(RACES):
                try:
                    return await conn.fetchrow(sql, *args)
                except asyncpg.UniqueViolationError:
                    continue  # a racing append with this write id committed first: find it
            raise StoreError(
                f"stream {key!r} of run {lease.run_id!r}: appends with write id {write!r} kept racing",
                run_id=lease.run_id,
            )

        row = await self._call(f"append to stream {key!r} of run {lease.run_id!r}", op)
        _check_fenced(lease, row)
        if row["known"] is not None:
            return int(row["known"])
        return None if row["at"] is None else int(row["at"])  # none: the stream is closed

    async def close(self, lease: Lease, key: str) -> None:
        sql, args = self._sql["close"], self._write_args(lease, key)
        row = await self._call(
            f"close stream {key!r} of run {lease.run_id!r}", lambda conn: conn.fetchrow(sql, *args)
        )
        _check_fenced(lease, row)

    async def read(self, run_id: str, key: str, offset: int, limit: int) -> StreamItems:
        sql = self._sql["read"]
        rows = await self._call(
            f"read stream {key!r} of run {run_id!r}",
            lambda conn: conn.fetch(sql, run_id, key, int(offset), int(limit)),
        )
        items = [(int(row[1]), row[2]) for row in rows if row[1] is not None]
        return StreamItems(items, bool(rows[0][0]))

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]]:
        sql = self._sql["list_streams"]
        rows = await self._call(f"list the streams of run {run_id!r}", lambda conn: conn.fetch(sql, run_id))
        return {row[0]: (int(row[1]), bool(row[2])) for row in rows}

    @contextlib.asynccontextmanager
    async def listening(self, run_id: str, local: OutputWatch) -> AsyncIterator[OutputWatch]:
        """``local`` (the base class's watch of ``run_id``) woken by NOTIFYs too, LISTENing before
        the caller's first read so that no write after it goes unheard."""
        listener = self._listener()
        if listener is None:  # not open: the reads raise StoreUnavailable
            yield local
            return
        with listener.waiting(_output_sql.output_key(run_id), local.event):
            await listener.ensure()
            yield ListeningWatch(local.event, listener, self._poll_interval)

    def _write_args(self, lease: Lease, key: str) -> tuple[str, int, str, str, str]:
        listener = self._listener()
        # Signed by this store object, whose listener then skips it (its watchers are woken
        # directly); not open: the call fails anyway.
        sender = "" if listener is None else listener.sender
        return (
            lease.run_id,
            lease.token,
            self._channel,
            f"{_output_sql.output_key(lease.run_id)}/{sender}",
            key,
        )


def _check_fenced(lease: Lease, row: Any) -> None:
    if row is None or row["token"] != lease.token:
        raise LeaseLost.stale(lease.run_id, lease.token, None if row is None else row["token"])
