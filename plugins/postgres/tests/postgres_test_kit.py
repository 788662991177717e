"""Helpers shared by the Postgres store's tests (on pytest's ``pythonpath``, see pyproject.toml)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from durable.store import Lease, RunRecord, RunStatus
from durable_postgres import PostgresStore
from durable_postgres._url import quote_identifier

STATEMENT_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


def pending(run_id: str) -> RunRecord:
    """A pending run, owned by nobody."""
    now = time.time()
    return RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", now, now)


async def claimed_and_released(store: PostgresStore, run_id: str) -> Lease:
    """Creates ``run_id``, claims it as ``old`` and releases it: claimable by anyone at once,
    while ``old`` still holds the returned lease's token."""
    await store.create_run(pending(run_id))
    old = await store.claim_run(run_id, "old", 60.0)
    assert old is not None
    await store.update_run(old, RunStatus.RUNNING, release=True)
    return old


def owned(run_id: str) -> RunRecord:
    """A running run owned by ``me`` under lease token 1."""
    now = time.time()
    return RunRecord(
        run_id,
        "wf",
        RunStatus.RUNNING,
        "{}",
        "d",
        now,
        now,
        owner="me",
        lease_token=1,
        lease_expires_at=now + 60,
    )


class RowGate:
    """Holds one run's row locked (``FOR UPDATE``, in a transaction on a connection of its own), so
    that statements needing that row queue on the server in the order they arrive: ``queued(n)``
    waits until ``n`` statements wait behind the gate, ``open()`` lets them through in that order.
    A race whose winner is chosen, with both statements in flight at the server at once."""

    def __init__(self, store: PostgresStore, run_id: str) -> None:
        self._store, self._run_id = store, run_id
        self._conn: Any = None

    async def __aenter__(self) -> RowGate:
        self._conn = await self._store._connect()
        await self._conn.execute("BEGIN")
        table = f"{quote_identifier(self._store.schema)}.runs"
        locked = await self._conn.fetchval(
            f"SELECT 1 FROM {table} WHERE run_id = $1 FOR UPDATE", self._run_id
        )
        assert locked == 1, f"no run {self._run_id!r} to hold"
        return self

    async def queued(self, count: int, timeout: float = 30.0) -> None:
        """Waits until exactly ``count`` backends wait behind the gate, directly or behind another
        waiter (other sessions' statements on the same server are not counted)."""
        gate = self._conn.get_server_pid()
        deadline = time.monotonic() + timeout
        while True:
            # Within a transaction the server keeps its first view of pg_stat_activity: drop it.
            await self._conn.execute("SELECT pg_stat_clear_snapshot()")
            rows = await self._conn.fetch(
                "SELECT pid, pg_blocking_pids(pid) AS blockers FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock'"
            )
            blocked: set[int] = set()
            grew = True
            while grew:
                before = len(blocked)
                blocked |= {r["pid"] for r in rows if {gate, *blocked} & set(r["blockers"])}
                grew = len(blocked) > before
            if len(blocked) == count:
                return
            assert len(blocked) < count, f"{len(blocked)} statements wait behind the gate, not {count}"
            assert time.monotonic() < deadline, (
                f"{len(blocked)} statements wait behind the gate after {timeout} s"
            )
            await asyncio.sleep(0.002)

    async def open(self) -> None:
        """Ends the gate's transaction (it changed nothing): the queued statements go, in order."""
        await self._conn.execute("ROLLBACK")

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._conn.close()


class RecordingConnection:
    """Records the SQL of every statement sent through a pooled connection.

    ``fail_after`` names a statement that, the first time it runs, commits and then fails
    as if the connection had been lost before the reply arrived.
    """

    def __init__(self, conn: Any, pool: RecordingPool) -> None:
        self._conn, self._pool = conn, pool

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in STATEMENT_METHODS:
            return attr

        async def recorded(sql: str, *args: Any, **kwargs: Any) -> Any:
            self._pool.statements.append(sql)
            self._pool.arguments.append(args)
            result = await attr(sql, *args, **kwargs)
            if self._pool.fail_after is not None and sql == self._pool.fail_after:
                self._pool.fail_after = None
                raise ConnectionResetError("injected: the reply was lost")
            return result

        return recorded


class RecordingPool:
    """Wraps a store's pool: counts the connections taken and given back, records statements."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.statements: list[str] = []
        self.arguments: list[tuple[Any, ...]] = []
        """The arguments of each statement in ``statements``."""
        self.acquires = 0
        self.releases = 0
        self.fail_after: str | None = None

    async def acquire(self, **kwargs: Any) -> RecordingConnection:
        self.acquires += 1
        return RecordingConnection(await self._pool.acquire(**kwargs), self)

    async def release(self, conn: RecordingConnection) -> None:
        self.releases += 1
        await self._pool.release(conn._conn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def kinds(self, store: PostgresStore) -> Counter[str]:
        """How many statements of each of the store's named statements were sent."""
        names = {sql: name for name, sql in store._sql.items()}
        return Counter(names.get(sql, "other") for sql in self.statements)


@contextmanager
def recording(store: PostgresStore) -> Iterator[RecordingPool]:
    """Records what ``store`` does with its pool inside the block."""
    real = store._pool
    pool = RecordingPool(real)
    store._pool = pool  # type: ignore[assignment]
    try:
        yield pool
    finally:
        store._pool = real
