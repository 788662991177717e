"""``PostgresStore``: an asyncpg pool, one statement per checkpoint or run write (or per batch of
concurrent ones), LISTEN/NOTIFY for signals.

The statements are in ``_sql``, the tables in ``_schema``, how concurrent calls share a statement
in ``_batching`` and where calls get their connections in ``_conns``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from asyncpg import Record

from durable._decode import decode_failure, run_from_row
from durable.batching import WriteBatcher
from durable.errors import ConfigurationError, LeaseLost, StoreError, StoreNotFound, StoreUnavailable
from durable.store import (
    Capability,
    Enqueued,
    Lease,
    OutputWatch,
    QueuedRun,
    QueueLimits,
    QueueStats,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    StepStatus,
    Store,
    StreamItems,
)
from durable_postgres import _sql
from durable_postgres._batching import (
    BATCH,
    FLUSHES_IN_FLIGHT,
    Batching,
    Created,
    RunUpdate,
    SaveItem,
    firsts,
    flush,
    json_rows,
    outcome_of,
    run_row,
    run_weight,
    step_row,
    step_weight,
    update_row,
    update_weight,
)
from durable_postgres._conns import PER_CALL, Conns, HeldConnection, held_count, terminate
from durable_postgres._errors import Failure, classify, describe
from durable_postgres._listener import Listener, channel_name, wake_key
from durable_postgres._outputs import PostgresOutputs
from durable_postgres._queues import PostgresQueues
from durable_postgres._schema import migrate, read_version
from durable_postgres._url import DEFAULT_SCHEMA, check_schema_name, parse_url, quote_identifier

if TYPE_CHECKING:
    from durable_postgres._conns import Conn

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
log = logging.getLogger("durable_postgres")

APPLICATION_NAME = "durable-postgres"
SAFETY_POLL = 5.0
"""While the LISTEN connection is up, waiters still re-check this often, in case a NOTIFY is lost."""
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
SUSPECT_AFTER = 1.0
"""Seconds without an answer after which a statement its caller cancelled counts as a sign of
dead connections, as a timeout does (see ``PostgresStore._suspect``)."""


def _signal(row: Record | tuple[Any, ...]) -> SignalRecord:
    return SignalRecord(row[0], row[1], row[2], row[3], row[4], row[5])


def _affected(status: str) -> int:
    """The row count of an ``INSERT 0 n`` / ``UPDATE n`` / ``DELETE n`` command tag."""
    return int(status.rsplit(" ", 1)[-1])


def _leaves_entry(status: RunStatus, release: bool) -> bool:
    """Whether an owner's update takes the run out of its ``runs_live`` entry: it finished, or it
    parked (on a signal: out of the table; in a sleep: into the sleepers' range)."""
    return status.is_final or (status is RunStatus.WAITING and release)


def _rebuild(cls: type[PostgresStore], url: str, options: dict[str, Any]) -> PostgresStore:
    return cls(url, **options)


class PostgresStore(Store):
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
    capabilities = frozenset(
        {
            Capability.PERSISTENT,
            Capability.MULTI_PROCESS,
            Capability.NOTIFY,
            Capability.MULTI_HOST,
            Capability.STREAMS,
            Capability.QUEUES,
        }
    )
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

    @property
    def _round_trip(self) -> float:
        """How long one attempt of an operation may wait."""
        return self.operation_timeout / 2

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

    async def _create_pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            self._target.dsn,
            user=self._target.user,
            password=self._target.password,
            min_size=self.min_size,
            max_size=self.max_size,
            command_timeout=self.command_timeout,
            timeout=self.connect_timeout,
            server_settings=self._server_settings(),
            # asyncpg's default reset runs a query (unlock, close, unlisten, reset) on every
            # release: a second round trip per checkpoint. This store keeps no session state
            # (its locks are transaction-scoped; LISTEN has its own connection).
            reset=_keep_session,
        )
        return pool

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._target.dsn,
            user=self._target.user,
            password=self._target.password,
            timeout=self.connect_timeout,
            command_timeout=self.command_timeout,
            server_settings=self._server_settings(),
        )
        return conn

    def _server_settings(self) -> dict[str, str] | None:
        # Named in pg_stat_activity, unless the URL names the application itself.
        if "application_name" in dict(parse_qsl(urlsplit(self._target.dsn).query)):
            return None
        return {"application_name": APPLICATION_NAME}

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

    # -- the retry loop ----------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return min(0.05 * 4.0 ** (attempt - 1), 2.0) * random.uniform(0.5, 1.0)

    async def _retrying_connect(self, what: str, connect: Callable[[], Awaitable[T]]) -> T:
        started, last = time.monotonic(), None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff(attempt))
            try:
                return await connect()
            except StoreError:
                raise
            except Exception as exc:
                if classify(exc) is Failure.PERMANENT:
                    raise StoreUnavailable(f"{self!r}: cannot {what}: {describe(exc)}") from exc
                last = exc
        raise self._gave_up(what, started, last)

    def _gave_up(
        self, what: str, started: float, last: BaseException | None, attempts: int = 0
    ) -> StoreUnavailable:
        took = time.monotonic() - started
        if isinstance(last, TimeoutError):
            cause = (
                f"no answer within {self._round_trip:.3g} s per attempt (operation_timeout="
                f"{self.operation_timeout:g}: raise it for values this large or a server this slow)"
            )
        else:
            cause = f"last error: {describe(last) if last else 'none'}"
        error = StoreUnavailable(
            f"{self!r}: could not {what}: the server was unreachable for {attempts or self.retries + 1} "
            f"attempts over {took:.1f}s ({cause}). Nothing is lost: retry once the database is back."
        )
        error.__cause__ = last
        return error

    async def _call(
        self,
        what: str,
        op: Callable[[Conn], Awaitable[T]],
        retry_op: Callable[[Conn], Awaitable[T]] | None = None,
        conns: Conns = PER_CALL,
        *,
        timeout: float | None = None,
    ) -> T:
        """Run ``op`` on a pooled connection from ``conns``, retrying transient failures with backoff,
        for at most ``timeout`` seconds (``operation_timeout``), each attempt at most half of it.

        After a connection was lost mid-statement (the first attempt may have committed),
        later attempts run ``retry_op`` instead when given: it finds out what happened. A
        connection whose attempt failed, timed out or was cancelled is terminated, never handed
        back to the pool; after a timeout every other pooled connection is replaced too (they
        may have died as silently).
        """
        budget = self.operation_timeout if timeout is None else timeout
        started, last = time.monotonic(), None
        deadline = started + budget
        uncertain = False
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                pause = min(self._backoff(attempt), deadline - time.monotonic())
                if pause > 0:
                    await asyncio.sleep(pause)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            attempts += 1
            pool = self._pool
            if pool is None:
                raise StoreUnavailable(f"{self!r} is not open (call open(), or use it through a Workflow)")
            limit = min(left, budget / 2)
            ends = asyncio.get_running_loop().time() + limit
            try:
                async with asyncio.timeout_at(ends):
                    conn = await conns.get(pool, min(limit, self.connect_timeout))
            except Exception as exc:
                if self._pool is not pool:
                    raise StoreUnavailable(f"{self!r} was closed during {what}") from exc
                if classify(exc) is Failure.PERMANENT and not isinstance(exc, asyncpg.InterfaceError):
                    raise StoreUnavailable(f"{self!r}: cannot connect to {what}: {describe(exc)}") from exc
                if isinstance(exc, TimeoutError):
                    await self._suspect(pool)  # no connection in time: the idle ones may be as dead
                last = exc
                continue
            healthy = False
            sent = time.monotonic()
            try:
                async with asyncio.timeout_at(ends):
                    result = await (retry_op if uncertain and retry_op is not None else op)(conn)
                healthy = True
                return result
            except StoreError:
                healthy = True  # raised by ``op`` after its statements completed
                raise
            except Exception as exc:
                failure = classify(exc)
                if failure is Failure.PERMANENT:
                    if not isinstance(exc, asyncpg.PostgresError):
                        # Refused by the client mid-protocol (a value asyncpg cannot encode): the
                        # server still waits for the statement, holding its locks.
                        terminate(conn)
                    raise self._permanent(what, exc) from exc
                uncertain = uncertain or failure is Failure.UNKNOWN
                last = exc
                terminate(conn)  # never hand a connection in an unknown state back to the pool
                if isinstance(exc, TimeoutError):
                    await self._suspect(pool)
                log.debug("durable-postgres: %s failed (%s), attempt %d", what, describe(exc), attempt + 1)
            except BaseException:
                terminate(conn)  # cancelled mid-statement: its state is unknown
                if time.monotonic() - sent >= SUSPECT_AFTER:
                    # The caller gave up waiting (the heartbeat bounds a renewal by its own timeout):
                    # as good a sign as a timeout of ours that the other connections may be dead.
                    self._background(self._suspect(pool))
                raise
            finally:
                await conns.put(pool, conn, healthy=healthy)
        raise self._gave_up(what, started, last, attempts)

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _suspect(self, pool: asyncpg.Pool) -> None:
        """An attempt got no answer in time: the other connections may be as dead without saying
        so (a partition, a NAT that forgot them). Each is replaced before its next use."""
        with contextlib.suppress(Exception):
            await pool.expire_connections()
        for held in self._held:
            held.drop()

    def _permanent(self, what: str, exc: Exception) -> StoreError:
        if isinstance(exc, asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError):
            return StoreError(
                f"{self!r}: cannot {what}: a value contains a character PostgreSQL text cannot store "
                f"(NUL, \\x00): {describe(exc)}"
            )
        if isinstance(exc, asyncpg.UndefinedTableError | asyncpg.InvalidSchemaNameError):
            return StoreError(f"{self!r}: cannot {what}: schema {self.schema!r} was dropped: {describe(exc)}")
        return StoreError(f"{self!r}: cannot {what}: {describe(exc)}")

    async def _stale(self, conn: Conn, lease: Lease) -> LeaseLost:
        token = await conn.fetchval(self._sql["token"], lease.run_id)
        return LeaseLost.stale(lease.run_id, lease.token, token)

    # -- reading rows --------------------------------------------------------------

    def _run(self, row: Any) -> RunRecord:
        """The run in a row of ``RUN_COLUMNS``, or a corrupt run naming the field it cannot read."""
        return run_from_row(self._label, row)

    def _steps_of(self, run_id: str, rows: list[Record]) -> list[StepRecord]:
        try:
            return StepRecord.from_rows(run_id, rows)
        except (ValueError, TypeError) as exc:
            # Only a status the core does not know fails here (every other column is typed).
            key = next((row[0] for row in rows if row[3] not in _STEP_STATUSES), "?")
            raise decode_failure(self._label, run_id, f"step {key!r}: status", exc) from exc

    def _step(self, row: Record | tuple[Any, ...]) -> StepRecord:
        try:
            return StepRecord.from_row(row)
        except (ValueError, TypeError) as exc:
            raise decode_failure(self._label, row[0], f"step {row[1]!r}: status", exc) from exc

    # -- runs --------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> Created:
        creates = self._creates
        if creates is None:  # not open: _call says so
            return await self._create_alone(run)
        return await creates.submit(run)

    async def _create_alone(self, run: RunRecord, conns: Conns = PER_CALL) -> Created:
        async def retry(conn: Conn) -> Created:
            stored, created = await self._create_run(conn, run)
            # Every field equal (creation time included) means the lost first attempt inserted it.
            return stored, created or _same_creation(stored, run)

        return await self._call(
            f"create run {run.run_id!r}", lambda conn: self._create_run(conn, run), retry, conns
        )

    async def _create_run(self, conn: Conn, run: RunRecord) -> Created:
        row = await conn.fetchrow(self._sql["create_run"], *run_row(run), self.clock())
        assert row is not None
        if row["created"]:
            return _as_granted(run, row["granted"]), True
        if row["run_id"] is not None:
            return self._run(row[2:]), False
        # A concurrent creator committed after this statement's snapshot was taken.
        existing = await conn.fetchrow(self._sql["get_run"], run.run_id)
        if existing is None:
            raise StoreError(f"{self!r}: run {run.run_id!r} vanished while it was being created")
        return self._run(existing), False

    async def _create_batch(
        self, conn: Conn, runs: list[RunRecord], *, retrying: bool
    ) -> list[Created | BaseException]:
        """Insert the first run of each id in one statement; read the others' stored runs in one more.

        ``retrying`` after a lost connection: a stored run equal to the first caller's in every
        field is the one the lost attempt inserted, so that caller created it (as in ``create_run``).
        """
        first = firsts(runs, lambda run: run.run_id)
        rows = await conn.fetch(
            self._sql["create_run_batch"], json_rows([run_row(runs[i]) for i in first.values()]), self.clock()
        )
        created = {row[0]: row[1] for row in rows}
        mine = [first[run.run_id] == index and run.run_id in created for index, run in enumerate(runs)]
        wanted = list({run.run_id for run, done in zip(runs, mine, strict=True) if not done})
        stored = {}
        if wanted:
            stored = {row[0]: self._run(row) for row in await conn.fetch(self._sql["get_runs"], wanted)}
        outcomes: list[Created | BaseException] = []
        for index, run in enumerate(runs):
            found = stored.get(run.run_id)
            if mine[index]:
                outcomes.append((_as_granted(run, created[run.run_id]), True))
            elif found is not None:
                ours = retrying and first[run.run_id] == index and _same_creation(found, run)
                outcomes.append((found, ours))
            else:  # deleted since it conflicted: as a lone call would, create it
                outcomes.append(await outcome_of(self._create_run(conn, run)))
        return outcomes

    async def get_run(self, run_id: str) -> RunRecord | None:
        sql = self._sql["get_run"]
        row = await self._call(f"read run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id))
        return None if row is None else self._run(row)

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        claim_id = secrets.token_hex(8)

        async def op(conn: Conn) -> Lease | None:
            row = await conn.fetchrow(self._sql["claim"], run_id, owner, float(lease_seconds), claim_id)
            return None if row is None else Lease(run_id, owner, row[0], row[1])

        async def retry(conn: Conn) -> Lease | None:
            row = await conn.fetchrow(self._sql["claimed"], run_id, claim_id)
            if row is not None:
                return Lease(run_id, owner, row[0], row[1])
            return await op(conn)

        return await self._call(f"claim run {run_id!r}", op, retry)

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        async def op(conn: Conn) -> RunRecord:
            row = await conn.fetchrow(
                self._sql["renew"], lease.run_id, lease.token, lease.owner, float(lease_seconds), activity
            )
            if row is None:
                raise await self._stale(conn, lease)
            return self._run(row)

        return await self._call(f"renew the lease of run {lease.run_id!r}", op)

    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
        activity: str | None = None,
    ) -> None:
        update = RunUpdate(lease, status, result, error, wake_at, release, activity)
        updates = self._updates
        if updates is None:  # not open: _call says so
            await self._update_alone(update)
        else:
            await updates.submit(update)
        if _leaves_entry(status, release):
            self._took_out(1)
        if status.is_final:
            self.wake_output_waiters(lease.run_id)  # readers of its streams end

    async def _update_alone(self, update: RunUpdate, conns: Conns = PER_CALL) -> None:
        await self._call(
            f"update run {update.lease.run_id!r}", lambda conn: self._update_run(conn, update), conns=conns
        )

    async def _update_run(self, conn: Conn, update: RunUpdate) -> None:
        lease, sql = update.lease, self._sql["update_release" if update.release else "update"]
        args = (
            lease.run_id, lease.token, update.status.value, update.result, update.error, update.wake_at,
            update.activity,
        )  # fmt: skip
        if _affected(await conn.execute(sql, *args)) == 0:
            raise await self._stale(conn, lease)

    async def _update_batch(self, conn: Conn, updates: list[RunUpdate]) -> list[BaseException | None]:
        """Update the first item of each run in one statement; give the others what a lone call gives.

        It sets values, nothing counts up: ``_call`` may repeat it after a lost connection.
        """
        first = firsts(updates, lambda update: update.lease.run_id)
        rows = await conn.fetch(
            self._sql["update_run_batch"], json_rows([update_row(updates[i]) for i in first.values()])
        )
        updated = {row[0] for row in rows}
        stale = [run_id for run_id in first if run_id not in updated]
        tokens = {row[0]: row[1] for row in await conn.fetch(self._sql["tokens"], stale)} if stale else {}
        outcomes: list[BaseException | None] = []
        for index, update in enumerate(updates):
            lease = update.lease
            if first[lease.run_id] != index:  # a later update of a run in the statement: after it
                outcomes.append(await outcome_of(self._update_run(conn, update)))
            elif lease.run_id in updated:
                outcomes.append(None)
            else:
                outcomes.append(LeaseLost.stale(lease.run_id, lease.token, tokens.get(lease.run_id)))
        return outcomes

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        row = await self._call(
            f"cancel run {run_id!r}", lambda conn: conn.fetchrow(self._sql["cancel"], run_id)
        )
        if row is None:
            return await self.get_run(run_id)  # unknown, or a status no release writes: corrupt
        run = self._run(row)
        if run.status is RunStatus.CANCELLED:
            self._took_out(1)
            self.wake_output_waiters(run_id)
        return run

    async def reset_run(self, run_id: str) -> RunRecord | None:
        sql = self._sql["reset"]
        row = await self._call(f"reset run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id))
        # Only failed and cancelled runs are reset; any other is returned as it is.
        return await self.get_run(run_id) if row is None else self._run(row)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """``query``'s runs, each filter read from an index (``_sql.list_runs``)."""
        statement = _sql.list_runs(self._quoted, query)
        if statement is None:
            return []
        sql, params = statement
        rows = await self._call("list runs", lambda conn: conn.fetch(sql, *params))
        return [self._run(row) for row in rows]

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs due at ``now`` (``durable._lifecycle.is_due``), of ``workflows`` if given, oldest
        first: one query on ``runs_live`` (the runs that may become due, kept by triggers), whose
        cost does not grow with the finished runs the schema holds.

        One clock: ``now`` is read on this store's ``clock`` and judged on the server's, that
        many seconds from the server's ``now()`` (a worker passes ``time.time()``: the server's
        now), so a worker whose clock is off resumes a run exactly when the server says its
        lease expired. Rows that cannot be read are left out where the query can tell.
        """
        offset = float(now) - self.clock()
        if workflows is None:
            rows = await self._call("list due runs", lambda conn: conn.fetch(self._sql["due"], offset, limit))
        elif not workflows:
            return []
        else:
            names = sorted(workflows)
            rows = await self._call(
                "list due runs", lambda conn: conn.fetch(self._sql["due_of"], offset, limit, names)
            )
        return [self._run(row) for row in rows]

    async def delete_run(self, run_id: str) -> bool:
        tag = await self._call(
            f"delete run {run_id!r}", lambda conn: conn.execute(self._sql["delete"], run_id)
        )
        deleted = _affected(tag) == 1
        if deleted:
            self._took_out(1)
            self.wake_output_waiters(run_id)
        return deleted

    def _took_out(self, count: int) -> None:
        """``count`` runs left ``runs_live`` through this store: every ``TIDY_EVERY``, vacuum it."""
        self._removed += count
        if self._removed < TIDY_EVERY or self._pool is None:
            return
        if self._tidying is None or self._tidying.done():
            self._removed = 0
            self._tidying = asyncio.get_running_loop().create_task(self._tidy())

    async def _tidy(self) -> None:
        """Vacuum ``runs_live`` (in the background, skipped while another vacuum holds it).

        Each run that leaves it leaves a dead entry in its index until a vacuum, which a poll
        would step over. Autovacuum, where it runs, does this too (the table's thresholds are
        set for it); on a server where it is off or behind, the store's own vacuums keep the
        dead entries at about ``TIDY_EVERY`` per process. Cheap: the table holds the live runs
        only. Without the right to vacuum it (not its owner), the server skips it with a notice.
        """
        try:
            await self._call(
                "vacuum runs_live", lambda conn: conn.execute(self._sql["tidy"]), timeout=TIDY_TIMEOUT
            )
        except StoreError as exc:
            log.debug("durable-postgres: %r could not vacuum runs_live: %s", self, exc)

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._call(
            f"load the steps of run {run_id!r}", lambda conn: conn.fetch(self._sql["load_steps"], run_id)
        )
        return self._steps_of(run_id, rows)

    async def _save_step(self, conn: Conn, lease: Lease, step: StepRecord) -> StepRecord:
        values = step_row(lease, step)
        for _ in range(3):
            # The common case is this one statement: fencing check and first-writer-wins insert.
            if _affected(await conn.execute(self._sql["save_step"], *values)) == 1:
                return step
            row = await conn.fetchrow(self._sql["stored_step"], lease.run_id, step.key)
            assert row is not None
            if row["token"] != lease.token:
                raise await self._stale(conn, lease)
            if row["key"] is not None:
                return self._step(row[1:])
            # The completed step vanished between the two statements (its run was deleted
            # and created again): try again.
        raise StoreError(f"{self!r}: step {step.key!r} of run {lease.run_id!r} kept changing while saved")

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        steps = self._steps
        if steps is None:  # not open: _call says so
            return await self._save_alone(lease, step)
        return await steps.submit((lease, step))

    async def _save_alone(self, lease: Lease, step: StepRecord, conns: Conns = PER_CALL) -> StepRecord:
        return await self._call(
            f"save step {step.key!r} of run {lease.run_id!r}",
            lambda conn: self._save_step(conn, lease, step),
            conns=conns,
        )

    @staticmethod
    def _steps_what(items: list[SaveItem]) -> str:
        return f"save {len(items)} steps of {len({lease.run_id for lease, _ in items})} runs"

    async def _save_batch(self, conn: Conn, items: list[SaveItem]) -> list[StepRecord | BaseException]:
        """Insert the first item of each (run, key) in one statement; settle the rest in one more.

        Idempotent, so ``_call`` may retry it after a lost connection: a row that the lost
        attempt stored is found by ``_settle`` and returned, as a retried lone save returns it.
        """
        first = firsts(items, lambda item: (item[0].run_id, item[1].key))
        batch = [step_row(*items[index]) for index in first.values()]
        rows = await conn.fetch(self._sql["save_step_batch"], json_rows(batch))
        outcomes: list[StepRecord | BaseException | None] = [None] * len(items)
        for run_id, key in rows:
            outcomes[first[(run_id, key)]] = items[first[(run_id, key)]][1]
        rest = [index for index, outcome in enumerate(outcomes) if outcome is None]
        if rest:
            await self._settle(conn, items, rest, outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    async def _settle(
        self,
        conn: Conn,
        items: list[SaveItem],
        rest: list[int],
        outcomes: list[StepRecord | BaseException | None],
    ) -> None:
        """Give the items at ``rest`` (not inserted) what ``_save_step`` would give each, in order.

        One statement reads their runs' tokens and stored steps: a stale token is that item's
        ``LeaseLost``, a completed step is returned (first writer wins). Anything else (a failed
        step to replace, a step that vanished) is rare and goes through ``_save_step``.
        """
        wanted = list(dict.fromkeys((items[index][0].run_id, items[index][1].key) for index in rest))
        rows = await conn.fetch(
            self._sql["stored_steps"], [run_id for run_id, _ in wanted], [key for _, key in wanted]
        )
        stored: dict[tuple[str, str], tuple[int | None, StepRecord | None]] = {}
        unreadable: dict[tuple[str, str], StoreError] = {}
        for row in rows:
            found = None
            try:
                found = None if row[4] is None else self._step(row[3:])
            except StoreError as exc:
                unreadable[(row[0], row[1])] = exc
            stored[(row[0], row[1])] = (row[2], found)
        for index in rest:
            lease, step = items[index]
            token, found = stored[(lease.run_id, step.key)]
            if token != lease.token:
                outcomes[index] = LeaseLost.stale(lease.run_id, lease.token, token)
            elif (lease.run_id, step.key) in unreadable:
                outcomes[index] = unreadable[(lease.run_id, step.key)]
            elif found is not None and found.status is StepStatus.COMPLETED:
                outcomes[index] = found
            else:
                outcomes[index] = await outcome_of(self._save_step(conn, lease, step))

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        """Several checkpoints in one transaction: all are fenced, or none is written."""
        batch = list(steps)

        async def op(conn: Conn) -> list[StepRecord]:
            async with conn.transaction():
                return [await self._save_step(conn, lease, step) for step in batch]

        return await self._call(f"save {len(batch)} steps of run {lease.run_id!r}", op)

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

    # -- signals -----------------------------------------------------------------

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


_STEP_STATUSES = frozenset(status.value for status in StepStatus)


def _as_granted(run: RunRecord, granted: float | None) -> RunRecord:
    """The created run as stored: its lease expiry is the one the server granted (``_sql.granted``)."""
    return run if granted == run.lease_expires_at else replace(run, lease_expires_at=granted)


def _same_creation(stored: RunRecord, run: RunRecord) -> bool:
    """Whether ``stored`` is ``run`` as its creation wrote it (the lease expiry may be the server's)."""
    return replace(stored, lease_expires_at=run.lease_expires_at) == run


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo (see ``_create_pool``)."""
