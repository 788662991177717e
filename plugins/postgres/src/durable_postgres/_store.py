"""``PostgresStore``: an asyncpg pool, one statement per checkpoint or run write (or per batch of
concurrent ones), one LISTEN connection whose NOTIFYs wake waiters on signals, queues and outputs.

This module assembles the store and opens and closes it; each of its parts is a module:
``_calls`` (connections and the retry loop every call goes through, the base of the others),
``_runs`` (runs and leases), ``_steps`` (checkpoints), ``_signals``, ``_listing`` (``list_runs``,
``due_runs``), ``_queues`` and ``_outputs`` (events and streams; objects the store delegates to).
The statements are in ``_sql``, the tables in ``_schema``, how concurrent calls share a statement
in ``_batching`` and where calls get their connections in ``_conns``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from typing import Any, TypeVar

import asyncpg

from durable.batching import WriteBatcher
from durable.errors import ConfigurationError, StoreError, StoreNotFound
from durable.store import (
    Enqueued,
    Lease,
    OutputWatch,
    QueuedRun,
    QueueLimits,
    QueueStats,
    RunRecord,
    StepRecord,
    StreamItems,
)
from durable_postgres import CAPABILITIES, _sql
from durable_postgres._batching import (
    BATCH,
    FLUSHES_IN_FLIGHT,
    Batching,
    Created,
    RunUpdate,
    SaveItem,
    flush,
    run_weight,
    step_weight,
    update_weight,
)
from durable_postgres._calls import APPLICATION_NAME as APPLICATION_NAME
from durable_postgres._calls import SUSPECT_AFTER as SUSPECT_AFTER
from durable_postgres._calls import log
from durable_postgres._conns import PER_CALL, Conns, HeldConnection, held_count
from durable_postgres._errors import Failure, classify, describe
from durable_postgres._listener import Listener, channel_name
from durable_postgres._listing import PostgresListing
from durable_postgres._outputs import PostgresOutputs
from durable_postgres._queues import PostgresQueues
from durable_postgres._runs import PostgresRuns
from durable_postgres._schema import migrate, read_version
from durable_postgres._signals import SAFETY_POLL as SAFETY_POLL
from durable_postgres._signals import PostgresSignals
from durable_postgres._steps import PostgresSteps
from durable_postgres._url import DEFAULT_SCHEMA, check_schema_name, parse_url, quote_identifier

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

DEFAULT_OPERATION_TIMEOUT = 10.0
"""Seconds an operation may take, its retries included, before ``StoreUnavailable``; each attempt
(a connection from the pool and the statements on it) waits half of it."""
TIDY_EVERY = 2000
"""Runs a store object takes out of ``runs_live`` entries (finished, parked, deleted) between two
vacuums of that table it asks for (see ``PostgresStore._tidy``). Measured: a vacuum took 8-30 ms,
a poll over 1,000 dead entries read 46 buffers instead of 24 (5,000: 59); vacuuming every 500,
writing 20,000 finishing runs took 5.6 s instead of 3.0-3.7 s (every 2,000: 2.9-3.4 s)."""
TIDY_TIMEOUT = 60.0
"""Seconds a vacuum of ``runs_live`` may take (it holds the live runs only)."""


def _rebuild(cls: type[PostgresStore], url: str, options: dict[str, Any]) -> PostgresStore:
    return cls(url, **options)


class PostgresStore(PostgresRuns, PostgresSteps, PostgresSignals, PostgresListing):
    """A store in its own schema of a PostgreSQL database, shared by any number of hosts.

    Options (keyword arguments, or the URL's query string; keywords win): ``schema``
    (default ``durable``), ``min_size``/``max_size`` of the connection pool (1/10),
    ``operation_timeout`` in seconds (10): an operation, its retries included, raises
    ``StoreUnavailable`` at most that long after it started, and each attempt (a connection from
    the pool and its statements) waits at most half of it, then drops its connection, so a
    connection that died silently is replaced by the next attempt (values of hundreds of MB on a
    slow link need more); ``connect_timeout`` (10) bounds opening a connection within that,
    ``command_timeout`` (60) is asyncpg's bound on one statement (the schema's migrations are
    allowed an hour); ``retries`` of an operation that failed for a transient reason (3). The
    checkpoint, run-update and run-creation writers each keep one pool connection (at most half
    of ``max_size``, so a pool of 1 keeps none). Other query options (``sslmode``, ...) go to
    asyncpg.

    One clock: every lease comparison and expiry is the database server's (``now()``); ``clock``
    (this process's, ``time.time``) only places on it the ``now`` given to ``due_runs`` and the
    lease expiry of a run created with one (see ``durable_postgres._sql``).

    Text is stored exactly, except NUL (``\\x00``), which PostgreSQL ``TEXT`` cannot hold;
    the core's JSON escapes it (``\\u0000``), so only hand-made records can contain it. A row
    that cannot be read (edited by hand, damaged) is returned as a corrupt run
    (``durable._decode``); a step that cannot be read raises ``StoreCorrupted``.
    """

    name = "postgres"
    capabilities = CAPABILITIES  # declared in the package, which lists backends without the driver
    poll_interval = 0.25

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        command_timeout: float | None = None,
        connect_timeout: float | None = None,
        retries: int | None = None,
        operation_timeout: float | None = None,
    ) -> None:
        given = {
            "schema": schema,
            "min_size": min_size,
            "max_size": max_size,
            "command_timeout": command_timeout,
            "connect_timeout": connect_timeout,
            "retries": retries,
            "operation_timeout": operation_timeout,
        }
        self._url = url
        self._given = {key: value for key, value in given.items() if value is not None}
        target = parse_url(url)
        options = {**target.options, **self._given}
        self._target = target
        self.schema = check_schema_name(str(options.get("schema", DEFAULT_SCHEMA)))
        self.min_size = int(options.get("min_size", 1))
        self.max_size = int(options.get("max_size", 10))
        self.command_timeout = float(options.get("command_timeout", 60.0))
        self.connect_timeout = float(options.get("connect_timeout", 10.0))
        self.retries = int(options.get("retries", 3))
        self.operation_timeout = float(options.get("operation_timeout", DEFAULT_OPERATION_TIMEOUT))
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ConfigurationError(
                f"{self!r}: need 0 <= min_size <= max_size and max_size >= 1 "
                f"(got min_size={self.min_size}, max_size={self.max_size})"
            )
        if self.retries < 0 or min(self.command_timeout, self.connect_timeout, self.operation_timeout) <= 0:
            raise ConfigurationError(f"{self!r}: retries must be >= 0 and timeouts > 0")
        self._quoted = quote_identifier(self.schema)
        self._channel = channel_name(self.schema)
        self._label = repr(self)
        """Names this store in the errors and warnings of records it cannot read."""
        self._pool: asyncpg.Pool | None = None
        self._listener: Listener | None = None
        self._steps: WriteBatcher[SaveItem, StepRecord] | None = None
        self._creates: WriteBatcher[RunRecord, Created] | None = None
        self._updates: WriteBatcher[RunUpdate, None] | None = None
        self._held: list[HeldConnection] = []
        """The connections the batchers hold, given back to the pool by ``close``."""
        self._removed = 0
        """Runs taken out of ``runs_live`` since the last vacuum this store asked for."""
        self._tidying: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        """Background work that must not be lost to garbage collection (see ``_background``)."""
        self._sql = _sql.statements(self._quoted)
        self._outputs = PostgresOutputs(
            self._call, self._quoted, self._channel, lambda: self._listener, lambda: self.poll_interval
        )
        self._queues = PostgresQueues(
            self._call, self.schema, self._quoted, self._channel, self._run, lambda: self._listener,
            lambda: self.poll_interval,
        )  # fmt: skip

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """``postgresql://user:pass@host:5432/db?schema=app&max_size=20`` (also ``postgres://``,
        ``postgresql+asyncpg://``)."""
        return cls(url, **options)

    def __reduce__(self) -> tuple[Any, ...]:
        # Unopened stores travel to subprocesses as their URL and options, never a pool.
        return (_rebuild, (type(self), self._url, self._given))

    def __repr__(self) -> str:
        return f"<PostgresStore {self._target.display()} schema={self.schema!r}>"

    # -- lifecycle ---------------------------------------------------------------

    async def open(self, *, create: bool = True) -> None:
        if self._pool is not None:
            return
        pool = await self._retrying_connect("open the connection pool", self._create_pool)
        try:
            await self._retrying_connect("create or migrate the schema", lambda: self._migrate(pool, create))
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        self._listener = Listener(self._connect, self._channel, self._round_trip)
        self._held = [HeldConnection() for _ in range(held_count(self.max_size))]
        steps, updates, creates = [*self._held, PER_CALL, PER_CALL, PER_CALL][:3]
        # Checkpoints and run writes of concurrent runs that arrive while one of their kind is in
        # flight share the next statement; a lone call is still sent at once, alone.
        self._steps = self._batcher(
            Batching(
                self._steps_what,
                lambda item, conns: self._save_alone(*item, conns),
                self._save_batch,
                step_weight,
            ),
            steps,
        )
        self._creates = self._batcher(
            Batching(
                lambda runs: f"create {len(runs)} runs",
                self._create_alone,
                lambda conn, runs: self._create_batch(conn, runs, retrying=False),
                run_weight,
                lambda conn, runs: self._create_batch(conn, runs, retrying=True),
            ),
            creates,
        )
        self._updates = self._batcher(
            Batching(
                lambda items: f"update {len(items)} runs",
                self._update_alone,
                self._update_batch,
                update_weight,
            ),
            updates,
        )

    async def _migrate(self, pool: asyncpg.Pool, create: bool = True) -> None:
        try:
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                if not create and await read_version(conn, self.schema, self._quoted) == 0:
                    raise StoreNotFound(f"{self!r}: schema {self.schema!r} holds no durable store")
                await migrate(conn, self.schema, self._quoted)
        except asyncpg.PostgresError as exc:
            if classify(exc) is not Failure.PERMANENT:
                raise
            raise StoreError(f"{self!r}: cannot create or migrate the schema: {describe(exc)}") from exc

    async def close(self) -> None:
        batchers = (self._creates, self._steps, self._updates)
        self._creates = self._steps = self._updates = None
        for batcher in batchers:
            if batcher is not None:
                await batcher.drain()  # writes already accepted are made before the pool goes
        tidying, self._tidying = self._tidying, None
        if tidying is not None:
            tidying.cancel()
            with contextlib.suppress(BaseException):
                await tidying
        held, self._held = self._held, []
        for conns in held:  # no flush is left to use them: the pool can close without waiting
            await conns.close()
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
        self._queues.close()
        if listener is not None:
            await listener.close()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except Exception:  # a connection stuck mid-operation must not keep close() waiting
                pool.terminate()

    async def drop_schema(self) -> None:
        """Delete the store's schema with every run in it (for tests and teardown)."""
        sql = f"DROP SCHEMA IF EXISTS {self._quoted} CASCADE"
        await self._call("drop the schema", lambda conn: conn.execute(sql))

    def _took_out(self, count: int) -> None:
        """``count`` runs left ``runs_live`` through this store: every ``TIDY_EVERY``, vacuum it."""
        self._removed += count
        if self._removed < TIDY_EVERY or self._pool is None:
            return
        if self._tidying is None or self._tidying.done():
            self._removed = 0
            self._tidying = asyncio.get_running_loop().create_task(self._tidy())

    async def _tidy(self) -> None:
        """Vacuum ``runs_live`` and ``queue_open`` (in the background, skipped while another
        vacuum holds them).

        Each run that leaves one leaves a dead entry in its indexes until a vacuum, which a poll
        (or a queue claim, or ``queue_stats``) would step over: 100,000 finished queued runs made
        ``queue_stats`` 31x and a claim 2.3x slower before ``queue_open`` was vacuumed here too
        (benchmarks/flat_queue_history.py). Autovacuum, where it runs, does this too (the
        tables' thresholds are set for it); on a server where it is off or behind, the store's
        own vacuums keep the dead entries at about ``TIDY_EVERY`` per process. Cheap: the tables
        hold the live runs only. Without the right to vacuum them (not their owner), the server
        skips them with a notice.
        """
        try:
            await self._call(
                "vacuum runs_live and queue_open",
                lambda conn: conn.execute(self._sql["tidy"]),
                timeout=TIDY_TIMEOUT,
            )
        except StoreError as exc:
            log.debug("durable-postgres: %r could not vacuum runs_live and queue_open: %s", self, exc)

    # -- batching ----------------------------------------------------------------

    def _batcher(self, kind: Batching[I, R], conns: Conns) -> WriteBatcher[I, R]:
        """A batcher whose flushes (one at a time) take their connections from ``conns``."""
        return WriteBatcher(
            lambda items: flush(self._call, kind, conns, items),
            max_batch=BATCH,
            max_in_flight=FLUSHES_IN_FLIGHT,
        )

    # -- queues (_queues; the tables, triggers and functions are in _queue_sql) -----

    async def enqueue_run(self, run: RunRecord, entry: QueuedRun) -> tuple[RunRecord, Enqueued]:
        return await self._queues.enqueue(run, entry)

    async def claim_queued(
        self,
        queue: str,
        now: float,
        owner: str,
        lease_seconds: float,
        limits: QueueLimits,
        *,
        limit: int = 1,
        workflows: Collection[str] | None = None,
    ) -> list[tuple[RunRecord, Lease]]:
        """One call of the server-side ``queue_claim``: the queue's advisory lock, its live leases
        and rate window counted on the server's clock, the claims (see ``_queue_sql``)."""
        return await self._queues.claim(queue, now, owner, lease_seconds, limits, limit, workflows)

    async def get_queued(self, run_id: str) -> QueuedRun | None:
        return await self._queues.get(run_id)

    async def queue_stats(self, queue: str, now: float, *, window: float | None = None) -> QueueStats:
        return await self._queues.stats(queue, now, window)

    async def list_queues(self) -> list[str]:
        return await self._queues.names()

    async def wait_for_queues(self, queues: Collection[str], timeout: float) -> None:
        """Woken by NOTIFYs (enqueues, freed slots, woken runs, in every process), this
        process's ``wake_queue_waiters``, and the next delayed run's time."""
        await self._queues.wait(queues, timeout, super().wait_for_queues)

    # -- events and streams (_outputs: each write is one statement that NOTIFYs) -----

    async def set_event(self, lease: Lease, key: str, value: str) -> None:
        await self._outputs.set_event(lease, key, value)
        self.wake_output_waiters(lease.run_id)

    async def get_events(self, run_id: str) -> dict[str, str]:
        return await self._outputs.get_events(run_id)

    async def append_stream(
        self, lease: Lease, key: str, value: str, *, write_id: str | None = None
    ) -> int | None:
        offset = await self._outputs.append(lease, key, value, write_id)
        self.wake_output_waiters(lease.run_id)
        return offset

    async def close_stream(self, lease: Lease, key: str) -> None:
        await self._outputs.close(lease, key)
        self.wake_output_waiters(lease.run_id)

    async def read_stream(self, run_id: str, key: str, offset: int, limit: int = 1000) -> StreamItems:
        return await self._outputs.read(run_id, key, offset, limit)

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]]:
        return await self._outputs.list_streams(run_id)

    @contextlib.asynccontextmanager
    async def watch_output(self, run_id: str) -> AsyncIterator[OutputWatch]:
        async with super().watch_output(run_id) as local, self._outputs.listening(run_id, local) as watch:
            yield watch
