"""One LISTEN connection per store, waking the ``wait_for_signal`` callers and the output watchers
(``_outputs``) a NOTIFY is for."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg

log = logging.getLogger("durable_postgres")

RECONNECT_INTERVAL = 1.0
"""Least time between two attempts to reopen a lost listening connection."""
PING_AFTER = 2.0
"""Seconds without a notification after which a listener with waiters checks its connection: a
connection that died silently (a partition, a NAT or a server that forgot it) delivers nothing
and reports nothing."""


def wake_key(run_id: str, name: str) -> str:
    """The NOTIFY payload for deliveries of ``name`` to ``run_id``: short (payloads are limited to
    8000 bytes, ids are not) and unambiguous (length-prefixed before hashing)."""
    return hashlib.sha256(f"{len(run_id)}:{run_id}{name}".encode()).hexdigest()[:32]


def channel_name(schema: str) -> str:
    """The NOTIFY channel of one schema (at most 63 bytes, as Postgres requires)."""
    name = f"durable_signals_{schema}"
    if len(name.encode()) <= 63:
        return name
    return "durable_signals_" + hashlib.sha256(schema.encode()).hexdigest()[:40]


class Listener:
    """Dispatches NOTIFYs on one channel to waiters by payload.

    ``healthy`` is False until LISTEN succeeds and again after the connection drops or stops
    answering: waiters then poll, and ask for a reconnect now and then. While anyone waits, a
    connection silent for ``PING_AFTER`` seconds is pinged; no answer within ``timeout`` counts
    as lost (every waiter re-reads then, since deliveries may have been missed). Each attempt to
    connect and LISTEN also gives up after ``timeout``.
    """

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], channel: str, timeout: float
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._timeout = timeout
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._lock = asyncio.Lock()
        self._last_attempt = float("-inf")
        self._heard = time.monotonic()
        self._down = False
        """Lost (or never connected) and logged: the next reconnect is logged too."""
        self._watch: asyncio.Task[None] | None = None
        self._closed = False
        self.sender = secrets.token_hex(8)
        """Names this listener's store object in the payloads it sends as ``key/sender``: their
        NOTIFYs are not dispatched back to it (it woke its own waiters when it wrote)."""

    @property
    def healthy(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @contextlib.contextmanager
    def waiting(self, key: str, event: asyncio.Event | None = None) -> Iterator[asyncio.Event]:
        """An event (``event`` if given) set whenever a delivery for ``key`` may have arrived (or
        the listener failed)."""
        event = asyncio.Event() if event is None else event
        events = self._waiters.setdefault(key, set())
        events.add(event)
        try:
            yield event
        finally:
            events.discard(event)
            if not events:
                self._waiters.pop(key, None)

    def wake(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    async def ensure(self) -> bool:
        """Connect and LISTEN unless already done, being done, or tried less than
        ``RECONNECT_INTERVAL`` ago; whether the listener is healthy."""
        if self.healthy or self._closed or self._lock.locked():
            return self.healthy  # a reconnect under way: the caller polls meanwhile
        async with self._lock:
            if self.healthy or self._closed or time.monotonic() - self._last_attempt < RECONNECT_INTERVAL:
                return self.healthy
            self._last_attempt = time.monotonic()
            conn: asyncpg.Connection | None = None
            try:
                async with asyncio.timeout(self._timeout):
                    conn = await self._connect()
                    conn.add_termination_listener(self._lost)
                    await conn.add_listener(self._channel, self._notified)
            except Exception as exc:
                if not self._down:
                    log.warning(
                        "durable-postgres: cannot LISTEN on %s (%r); polling instead", self._channel, exc
                    )
                    self._down = True
                if conn is not None:
                    conn.terminate()
                return False
            if self._closed:
                conn.terminate()
                return False
            if self._down:
                log.warning("durable-postgres: listening on %s again", self._channel)
            self._conn, self._down, self._heard = conn, False, time.monotonic()
            if self._watch is None:
                self._watch = asyncio.get_running_loop().create_task(self._watching())
            return True

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self._heard = time.monotonic()
        if isinstance(payload, str):
            key, _, sender = payload.partition("/")
            if sender != self.sender:
                self.wake(key)

    def _lost(self, conn: Any) -> None:
        if conn is not self._conn:
            return  # an earlier connection, or reported already
        self._conn = None
        if not self._closed:
            log.warning("durable-postgres: LISTEN connection lost; waiters poll until it is back")
            self._down = True
        # Deliveries may be missed while disconnected: every waiter checks again now.
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _watching(self) -> None:
        """Pings the connection when waiters depend on it and it has been silent a while."""
        while not self._closed:
            await asyncio.sleep(PING_AFTER / 2)
            conn = self._conn
            if conn is None or not self._waiters or time.monotonic() - self._heard < PING_AFTER:
                continue
            try:
                async with asyncio.timeout(self._timeout):
                    await conn.fetchval("SELECT 1")
            except Exception as exc:
                if conn is self._conn and not self._closed:
                    log.warning(
                        "durable-postgres: LISTEN connection did not answer a ping within %.3g s (%r)",
                        self._timeout,
                        exc,
                    )
                conn.terminate()
                self._lost(conn)
            else:
                self._heard = time.monotonic()

    async def close(self) -> None:
        self._closed = True
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(BaseException):
                await watch
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except Exception:
                conn.terminate()
