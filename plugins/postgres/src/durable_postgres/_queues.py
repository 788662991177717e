"""Named queues of the Postgres store (``Capability.QUEUES``, docs/QUEUES.md): the store's calls
over ``_queue_sql``'s functions and statements, and ``wait_for_queues`` woken by its LISTEN
connection.

Each call is one statement (``enqueue_run`` and ``claim_queued`` call a server-side function, so
that a lock and the counts after it are one round trip: ``_queue_sql`` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from durable.errors import StoreError
from durable.store import Enqueued, Lease, QueuedRun, QueueLimits, QueueStats, RunRecord
from durable_postgres import _queue_sql
from durable_postgres._batching import Caller
from durable_postgres._listener import Listener
from durable_postgres._sql import RUN_COLUMNS

if TYPE_CHECKING:
    from durable_postgres._conns import Conn

_COLUMNS = tuple(RUN_COLUMNS.split(", "))


def run_json(run: RunRecord) -> str:
    """``run`` as a JSON object by column name (``queue_enqueue`` inserts it with
    ``jsonb_populate_record``): every column of ``RUN_COLUMNS``, none other."""
    values: dict[str, Any] = {column: getattr(run, column) for column in _COLUMNS}
    values["status"] = run.status.value
    return json.dumps(values)


class PostgresQueues:
    """The queues part of one ``PostgresStore``: its ``_call``, statements, decoder and listener."""

    def __init__(
        self,
        call: Caller,
        schema: str,
        quoted_schema: str,
        channel: str,
        decode: Callable[[Any], RunRecord],
        listener: Callable[[], Listener | None],
        poll_interval: Callable[[], float],
    ) -> None:
        self._call = call
        self._schema = schema
        self._sql = {
            **_queue_sql.statements(quoted_schema),
            **_queue_sql.with_run_columns(quoted_schema, RUN_COLUMNS),
        }
        self._channel = channel
        self._decode = decode
        self._listener = listener
        self._poll_interval = poll_interval
        self._woken: dict[str, asyncio.Event] = {}
        """Queue -> an event the listener sets on each NOTIFY for it, registered for good at the
        queue's first claim or wait: a NOTIFY between a claim and the next wait is not lost."""
        self._registered: Listener | None = None
        self._delays: dict[str, float | None] = {}
        """Queue -> its next delayed run's not-before time as last read (``None``: none then)."""
        self._stale: set[str] = set()
        """Queues whose ``_delays`` entry a NOTIFY may have made wrong."""
        self._registrations = contextlib.ExitStack()

    # -- writes ------------------------------------------------------------------

    async def enqueue(self, run: RunRecord, entry: QueuedRun) -> tuple[RunRecord, Enqueued]:
        key = _queue_sql.queue_key(entry.queue)
        lock_key = None
        if entry.debounce_key is not None:  # length-prefixed: no two (queue, key) pairs share it
            lock_key = f"{self._schema}:{len(entry.queue)}:{entry.queue}:{entry.debounce_key}"
        args = (
            run_json(run), entry.queue, int(entry.priority), entry.partition_key, float(entry.not_before),
            float(entry.enqueued_at), entry.debounce_key, lock_key, self._channel, key,
        )  # fmt: skip
        sql = self._sql["enqueue"]

        async def op(conn: Conn) -> tuple[Any, bool]:
            return await conn.fetchrow(sql, *args), False

        async def retry(conn: Conn) -> tuple[Any, bool]:
            return await conn.fetchrow(sql, *args), True

        (row, retried) = await self._call(f"enqueue run {run.run_id!r} on queue {entry.queue!r}", op, retry)
        stored = self._decode(row[1:])
        outcome = Enqueued(row[0])
        if retried and outcome is Enqueued.EXISTS and stored == run:
            # After a lost connection, a stored run equal to this call's in every field is the one
            # its first attempt created (as create_run tells).
            outcome = Enqueued.CREATED
        if outcome is not Enqueued.EXISTS:
            self._wake(entry.queue)
        return stored, outcome

    async def claim(
        self,
        queue: str,
        now: float,
        owner: str,
        lease_seconds: float,
        limits: QueueLimits,
        limit: int,
        workflows: Collection[str] | None,
    ) -> list[tuple[RunRecord, Lease]]:
        if limit <= 0 or (workflows is not None and not workflows):
            return []
        woken = self._event(queue)
        if woken is not None:
            if woken.is_set():
                self._stale.add(queue)  # an enqueue may have added a delayed run
            woken.clear()  # what was announced until now, this claim sees
        claim_id = secrets.token_hex(8)
        rate, window = limits.rate_limit if limits.rate_limit is not None else (None, None)
        args = (
            queue, float(now), owner, float(lease_seconds), limits.concurrency, limits.partition_concurrency,
            rate, None if window is None else float(window), int(limit),
            None if workflows is None else sorted(workflows), claim_id, f"{self._schema}:{queue}",
        )  # fmt: skip
        sql, claimed = self._sql["claim"], self._sql["claimed"]

        async def op(conn: Conn) -> list[Any]:
            return list(await conn.fetch(sql, *args))

        async def retry(conn: Conn) -> list[Any]:
            rows = list(await conn.fetch(claimed, queue, claim_id, owner))
            return rows or await op(conn)

        rows = await self._call(f"claim from queue {queue!r}", op, retry)
        taken = []
        for row in rows:
            run = self._decode(row)
            # The expiry is the row's own (a corrupt run decoded without one is unreadable anyway).
            taken.append((run, Lease(run.run_id, owner, run.lease_token, float(row["lease_expires_at"]))))
        return taken

    # -- reads -------------------------------------------------------------------

    async def get(self, run_id: str) -> QueuedRun | None:
        sql = self._sql["get_queued"]
        row = await self._call(
            f"read the queue entry of run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id)
        )
        return None if row is None else QueuedRun(*row)

    async def stats(self, queue: str, now: float, window: float | None) -> QueueStats:
        counts, started = self._sql["stats"], self._sql["started_in_window"]

        async def op(conn: Conn) -> tuple[Any, int | None]:
            row = await conn.fetchrow(counts, queue, float(now))
            in_window = None if window is None else await conn.fetchval(started, queue, float(window))
            return row, in_window

        row, in_window = await self._call(f"count queue {queue!r}", op)
        return QueueStats(queue, queued=row[2], delayed=row[1], running=row[0], started_in_window=in_window)

    async def names(self) -> list[str]:
        sql = self._sql["list_queues"]
        rows = await self._call("list the queues", lambda conn: conn.fetch(sql))
        return [row[0] for row in rows]

    # -- waiting -----------------------------------------------------------------

    async def wait(
        self,
        queues: Collection[str],
        timeout: float,
        local: Callable[[Collection[str], float], Awaitable[None]],
    ) -> None:
        """Until a NOTIFY for one of ``queues`` (one since its last claim or wait returns at once),
        this process's ``wake_queue_waiters`` (``local``: the base class's wait), the next delayed
        run's time, or ``timeout``. While the LISTEN connection is down, at most ``poll_interval``.

        The next delayed run's time is read again only for a queue whose NOTIFY woke a wait (an
        enqueue may have added one), whose time has come, or that was never read: an idle worker's
        waits send no statement, and none is sent while the listener is down (it polls anyway)."""
        names = list(dict.fromkeys(queues))
        events = [event for event in map(self._event, names) if event is not None]
        listener = self._listener()
        listening = listener is not None and await listener.ensure()
        if not listening:
            timeout = min(timeout, self._poll_interval())
        if any(event.is_set() for event in events):
            self._stale.update(names)
            for event in events:
                event.clear()
            return
        wall = time.time()
        if listening:
            await self._read_delays([name for name in names if self._due_to_read(name, wall)], wall)
        ahead = [at for at in (self._delays.get(name) for name in names) if at is not None]
        if ahead:
            timeout = min(timeout, max(0.0, min(ahead) - wall))
        waits: list[asyncio.Future[object]] = [asyncio.ensure_future(event.wait()) for event in events]
        waits.append(asyncio.ensure_future(local(names, timeout)))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            if any(event.is_set() for event in events):
                self._stale.update(names)
            for event in events:
                event.clear()

    def _due_to_read(self, queue: str, wall: float) -> bool:
        if queue in self._stale or queue not in self._delays:
            return True
        at = self._delays[queue]
        return at is not None and at <= wall

    async def _read_delays(self, queues: list[str], wall: float) -> None:
        """The next not-before time after ``wall`` of each of ``queues`` (one statement)."""
        if not queues:
            return
        sql = self._sql["next_not_before"]
        try:
            rows = await self._call("read the next delayed runs", lambda conn: conn.fetch(sql, queues, wall))
        except StoreError:  # the claim after the wait reports an outage; meanwhile, poll
            return
        for name, at in rows:
            self._delays[name] = at
            self._stale.discard(name)

    def _event(self, queue: str) -> asyncio.Event | None:
        listener = self._listener()
        if listener is None:
            return None
        if listener is not self._registered:  # the store was reopened: register with the new one
            self.close()
            self._registered = listener
        event = self._woken.get(queue)
        if event is None:
            event = self._woken[queue] = self._registrations.enter_context(
                listener.waiting(_queue_sql.queue_key(queue))
            )
        return event

    def _wake(self, queue: str) -> None:
        """This process's waiters of ``queue`` need not wait for the NOTIFY."""
        listener = self._listener()
        if listener is not None:
            listener.wake(_queue_sql.queue_key(queue))

    def close(self) -> None:
        """Drop the registrations (the store closed its listener)."""
        self._registrations.close()
        self._registrations = contextlib.ExitStack()
        self._woken = {}
        self._registered = None
        self._delays = {}
