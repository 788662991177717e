"""``PostgresStore``: an asyncpg pool, one statement per checkpoint or run write (or per batch of
concurrent ones), LISTEN/NOTIFY for signals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlsplit

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from durable._lifecycle import CLAIMABLE, DUE_STATUSES
from durable.batching import WriteBatcher
from durable.errors import ConfigurationError, LeaseLost, StoreError, StoreNotFound, StoreUnavailable
from durable.store import (
    Capability,
    Lease,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    StepStatus,
    Store,
)
from durable_postgres._errors import Failure, classify, describe
from durable_postgres._listener import Listener, channel_name, wake_key
from durable_postgres._schema import migrate, read_version
from durable_postgres._url import DEFAULT_SCHEMA, check_schema_name, parse_url, quote_identifier

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
K = TypeVar("K", str, tuple[str, str])
if TYPE_CHECKING:
    Conn: TypeAlias = PoolConnectionProxy[Record]
    Row: TypeAlias = Record | tuple[Any, ...]
SaveItem: TypeAlias = tuple[Lease, StepRecord]
"""One ``save_step`` call waiting in the step batcher."""
Created: TypeAlias = tuple[RunRecord, bool]
"""What ``create_run`` returns: the stored run, and whether this call created it."""
log = logging.getLogger("durable_postgres")

RUN_COLUMNS = (
    "run_id, workflow, status, inputs, inputs_digest, created_at, updated_at, result, error, owner, "
    "lease_token, lease_expires_at, wake_at, deadline, parent_run_id, cancel_requested, activity"
)
STEP_COLUMNS = "run_id, key, task, args_digest, status, result, error, attempts, started_at, finished_at"
SIGNAL_COLUMNS = "run_id, name, delivery_id, payload, seq, sent_at"
# The database server's clock, so executors on hosts with skewed clocks agree on lease expiry.
NOW = "extract(epoch FROM now())::float8"
LIVE_LEASE = f"(owner IS NOT NULL AND lease_expires_at IS NOT NULL AND lease_expires_at > {NOW})"
SIGNAL_LOCK_SPACE = 0x6475  # first key of the two-int advisory locks that order a run's deliveries

APPLICATION_NAME = "durable-postgres"
SAFETY_POLL = 5.0
"""While the LISTEN connection is up, waiters still re-check this often, in case a NOTIFY is lost."""
# Measured on scenario B/C of benchmarks/run.py: a second flush in flight was no faster (it
# splits the waiting checkpoints into smaller batches), nor were smaller batches.
BATCH = 500
"""Most calls one flush of a batcher (steps, run creations, run updates) carries."""
BATCH_CHARS = 1 << 20
"""Inputs, results and errors one batch statement carries at most (large ones go in several)."""
FLUSHES_IN_FLIGHT = 1
"""Flushes of each batcher in flight at once."""
HELD_CONNECTIONS = 3
"""Batchers (steps first, then run updates, then run creations) that keep a pooled connection
across their flushes, if the pool is large enough (see ``_held_count``)."""


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """One ``update_run`` call waiting in the update batcher."""

    lease: Lease
    status: RunStatus
    result: str | None
    error: str | None
    wake_at: float | None
    release: bool
    activity: str | None


@dataclass(frozen=True, slots=True)
class Batching(Generic[I, R]):
    """How one kind of store call is made alone, and how several of them share a statement."""

    what: Callable[[list[I]], str]
    """Names a batch in errors: ``save 5 steps of 3 runs``."""
    alone: Callable[[I, Conns], Awaitable[R]]
    """The lone call, retried on a connection from the given source."""
    together: Callable[[Conn, list[I]], Awaitable[list[R | BaseException]]]
    """Several calls on one connection: one outcome per item, as the lone call gives it."""
    weight: Callable[[I], int]
    """The characters of an item's large values (its statement parameter grows with them)."""
    retry: Callable[[Conn, list[I]], Awaitable[list[R | BaseException]]] | None = None
    """Instead of ``together`` after a connection was lost mid-statement, if it must find out
    what the lost attempt did."""


class Conns:
    """Where ``_call`` gets its connections: this one acquires one from the pool per call."""

    async def get(self, pool: asyncpg.Pool, timeout: float) -> Conn:
        conn: Conn = await pool.acquire(timeout=timeout)
        return conn

    async def put(self, pool: asyncpg.Pool, conn: Conn, *, healthy: bool) -> None:
        """Done with ``conn``, which ``get`` gave: ``healthy`` unless its statement failed (or was
        cancelled), which leaves it in an unknown state."""
        await _release(pool, conn)


PER_CALL = Conns()


class HeldConnection(Conns):
    """One pooled connection kept across the calls of one user (a batcher, which flushes one at
    a time): a checkpoint then skips the pool's acquire and release (measured: about 30 µs, a
    third of a lone checkpoint's client CPU time).

    A connection whose statement failed is given back to the pool (``_call`` has terminated it
    if it may be broken) and the next call takes a fresh one: the held one is never reused in
    an unknown state. A second concurrent call, or one after ``close``, goes through the pool.
    """

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._conn: Conn | None = None
        self._busy = False
        self._closed = False

    async def get(self, pool: asyncpg.Pool, timeout: float) -> Conn:
        if self._busy or self._closed:
            return await super().get(pool, timeout)
        if self._conn is not None and (self._pool is not pool or not _alive(self._conn)):
            # Killed while idle, or taken from a pool the store no longer uses.
            await self._give_back()
        if self._conn is None:
            self._conn = await super().get(pool, timeout)
            self._pool = pool
        self._busy = True
        return self._conn

    async def put(self, pool: asyncpg.Pool, conn: Conn, *, healthy: bool) -> None:
        if conn is not self._conn:
            return await super().put(pool, conn, healthy=healthy)
        self._busy = False
        if not healthy or self._closed:
            await self._give_back()

    async def close(self) -> None:
        """Give the connection back to its pool (at once, or when the call using it ends)."""
        self._closed = True
        if not self._busy:
            await self._give_back()

    async def _give_back(self) -> None:
        pool, conn = self._pool, self._conn
        self._pool = self._conn = None
        if pool is not None and conn is not None:
            await _release(pool, conn)


def _alive(conn: Conn) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # the pool detached it when its connection died
        return False


async def _release(pool: asyncpg.Pool, conn: Conn) -> None:
    try:
        await pool.release(conn)
    except Exception:
        with contextlib.suppress(Exception):
            conn.terminate()


def _held_count(max_size: int) -> int:
    """How many batchers may hold a connection: at most half the pool, so that reads, claims
    and the other writes always find one (a pool of 1 holds none: every call acquires)."""
    return min(HELD_CONNECTIONS, max_size // 2)


def _run(row: Row) -> RunRecord:
    return RunRecord(
        row[0], row[1], RunStatus(row[2]), row[3], row[4], row[5], row[6], row[7], row[8], row[9],
        row[10], row[11], row[12], row[13], row[14], row[15], row[16],
    )  # fmt: skip


def _signal(row: Row) -> SignalRecord:
    return SignalRecord(row[0], row[1], row[2], row[3], row[4], row[5])


def _affected(status: str) -> int:
    """The row count of an ``INSERT 0 n`` / ``UPDATE n`` / ``DELETE n`` command tag."""
    return int(status.rsplit(" ", 1)[-1])


def _by_size(items: list[I], limit: int, weight: Callable[[I], int]) -> Iterator[list[I]]:
    """``items`` in order, in chunks whose ``weight`` adds up to at most ``limit`` characters
    (a larger item goes alone): one statement's parameter must not grow with the batch unbounded."""
    chunk: list[I] = []
    size = 0
    for item in items:
        heavy = weight(item)
        if chunk and size + heavy > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += heavy
    if chunk:
        yield chunk


def _firsts(items: list[I], key: Callable[[I], K]) -> dict[K, int]:
    """The index of the first item of each key, in key order.

    One statement may write a key only once. In key order, so that concurrent batches writing
    the same keys take them in one order where the plan follows the input; a deadlock left
    anyway is rolled back by the server and retried by ``_call``.
    """
    first: dict[K, int] = {}
    for index, item in enumerate(items):
        first.setdefault(key(item), index)
    return dict(sorted(first.items()))


def _json_rows(rows: list[list[Any]]) -> str:
    """The parameter of a batch statement: a JSON array with one array per item.

    One JSON text costs the client far less than an array per column (asyncpg looks up the
    type of a typed array on every new connection, and checks every element). JSON numbers
    are exact: a float is written in its shortest exact form. NaN and infinities are not
    JSON: they fail the batch, whose items are then written alone.
    """
    return json.dumps(rows, ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":"))


def _step_weight(item: SaveItem) -> int:
    return len(item[1].result or "") + len(item[1].error or "")


def _run_weight(run: RunRecord) -> int:
    return len(run.inputs) + len(run.result or "") + len(run.error or "") + len(run.activity or "")


def _update_weight(update: RunUpdate) -> int:
    return len(update.result or "") + len(update.error or "") + len(update.activity or "")


def _run_row(run: RunRecord) -> list[Any]:
    return [
        run.run_id, run.workflow, run.status.value, run.inputs, run.inputs_digest, run.created_at,
        run.updated_at, run.result, run.error, run.owner, run.lease_token, run.lease_expires_at,
        run.wake_at, run.deadline, run.parent_run_id, run.cancel_requested, run.activity,
    ]  # fmt: skip


def _update_row(update: RunUpdate) -> list[Any]:
    lease = update.lease
    return [
        lease.run_id, lease.token, update.status.value, update.result, update.error, update.wake_at,
        update.release, update.activity,
    ]  # fmt: skip


def _step_row(lease: Lease, step: StepRecord) -> list[Any]:
    return [
        lease.run_id, step.key, step.task, step.args_digest, step.status.value, step.result,
        step.error, step.attempts, step.started_at, step.finished_at, lease.token,
    ]  # fmt: skip


async def _outcome(call: Awaitable[R]) -> R | BaseException:
    """The call's result, or the ``StoreError`` (``LeaseLost``, ...) that belongs to this item alone.

    Other errors (a lost connection) propagate: they concern the whole batch, which is retried.
    """
    try:
        return await call
    except StoreError as exc:
        return exc


def _rebuild(cls: type[PostgresStore], url: str, options: dict[str, Any]) -> PostgresStore:
    return cls(url, **options)


class PostgresStore(Store):
    """A store in its own schema of a PostgreSQL database, shared by any number of hosts.

    Options (keyword arguments, or the URL's query string; keywords win): ``schema``
    (default ``durable``), ``min_size``/``max_size`` of the connection pool (1/10),
    ``command_timeout`` and ``connect_timeout`` in seconds (60/10), ``retries`` of an
    operation that failed for a transient reason (3). The checkpoint, run-update and
    run-creation writers each keep one pool connection (at most half of ``max_size``, so a
    pool of 1 keeps none). Other query options (``sslmode``,
    ...) go to asyncpg. Times the store takes come from the database server's clock.
    Text is stored exactly, except NUL (``\\x00``), which PostgreSQL ``TEXT`` cannot hold;
    the core's JSON escapes it (``\\u0000``), so only hand-made records can contain it.
    """

    name = "postgres"
    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS, Capability.NOTIFY})
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
    ) -> None:
        given = {
            "schema": schema,
            "min_size": min_size,
            "max_size": max_size,
            "command_timeout": command_timeout,
            "connect_timeout": connect_timeout,
            "retries": retries,
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
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ConfigurationError(
                f"{self!r}: need 0 <= min_size <= max_size and max_size >= 1 "
                f"(got min_size={self.min_size}, max_size={self.max_size})"
            )
        if self.retries < 0 or self.command_timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigurationError(f"{self!r}: retries must be >= 0 and timeouts > 0")
        self._quoted = quote_identifier(self.schema)
        self._channel = channel_name(self.schema)
        self._pool: asyncpg.Pool | None = None
        self._listener: Listener | None = None
        self._steps: WriteBatcher[SaveItem, StepRecord] | None = None
        self._creates: WriteBatcher[RunRecord, Created] | None = None
        self._updates: WriteBatcher[RunUpdate, None] | None = None
        self._held: list[HeldConnection] = []
        """The connections the batchers hold, given back to the pool by ``close``."""
        self._sql = _statements(self._quoted)

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
        self._listener = Listener(self._connect, self._channel)
        self._held = [HeldConnection() for _ in range(_held_count(self.max_size))]
        steps, updates, creates = [*self._held, PER_CALL, PER_CALL, PER_CALL][:3]
        # Checkpoints and run writes of concurrent runs that arrive while one of their kind is in
        # flight share the next statement; a lone call is still sent at once, alone.
        self._steps = self._batcher(
            Batching(
                self._steps_what,
                lambda item, conns: self._save_alone(*item, conns),
                self._save_batch,
                _step_weight,
            ),
            steps,
        )
        self._creates = self._batcher(
            Batching(
                lambda runs: f"create {len(runs)} runs",
                self._create_alone,
                lambda conn, runs: self._create_batch(conn, runs, retrying=False),
                _run_weight,
                lambda conn, runs: self._create_batch(conn, runs, retrying=True),
            ),
            creates,
        )
        self._updates = self._batcher(
            Batching(
                lambda items: f"update {len(items)} runs",
                self._update_alone,
                self._update_batch,
                _update_weight,
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
        held, self._held = self._held, []
        for conns in held:  # no flush is left to use them: the pool can close without waiting
            await conns.close()
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
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

    def _gave_up(self, what: str, started: float, last: BaseException | None) -> StoreUnavailable:
        error = StoreUnavailable(
            f"{self!r}: could not {what}: the server was unreachable for {self.retries + 1} attempts "
            f"over {time.monotonic() - started:.1f}s (last error: {describe(last) if last else 'none'}). "
            "Nothing is lost: retry once the database is back."
        )
        error.__cause__ = last
        return error

    async def _call(
        self,
        what: str,
        op: Callable[[Conn], Awaitable[T]],
        retry_op: Callable[[Conn], Awaitable[T]] | None = None,
        conns: Conns = PER_CALL,
    ) -> T:
        """Run ``op`` on a pooled connection from ``conns``, retrying transient failures with backoff.

        After a connection was lost mid-statement (the first attempt may have committed),
        later attempts run ``retry_op`` instead when given: it finds out what happened.
        """
        started, last = time.monotonic(), None
        uncertain = False
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff(attempt))
            pool = self._pool
            if pool is None:
                raise StoreUnavailable(f"{self!r} is not open (call open(), or use it through a Workflow)")
            try:
                conn = await conns.get(pool, self.connect_timeout)
            except Exception as exc:
                if self._pool is not pool:
                    raise StoreUnavailable(f"{self!r} was closed during {what}") from exc
                if classify(exc) is Failure.PERMANENT and not isinstance(exc, asyncpg.InterfaceError):
                    raise StoreUnavailable(f"{self!r}: cannot connect to {what}: {describe(exc)}") from exc
                last = exc
                continue
            healthy = False
            try:
                result = await (retry_op if uncertain and retry_op is not None else op)(conn)
                healthy = True
                return result
            except StoreError:
                healthy = True  # raised by ``op`` after its statements completed
                raise
            except Exception as exc:
                failure = classify(exc)
                if failure is Failure.PERMANENT:
                    raise self._permanent(what, exc) from exc
                uncertain = uncertain or failure is Failure.UNKNOWN
                last = exc
                with contextlib.suppress(Exception):  # the pool may have detached it already
                    conn.terminate()  # never hand a connection in an unknown state back to the pool
                log.debug("durable-postgres: %s failed (%s), attempt %d", what, describe(exc), attempt + 1)
            finally:
                await conns.put(pool, conn, healthy=healthy)
        raise self._gave_up(what, started, last)

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
            return stored, created or stored == run

        return await self._call(
            f"create run {run.run_id!r}", lambda conn: self._create_run(conn, run), retry, conns
        )

    async def _create_run(self, conn: Conn, run: RunRecord) -> Created:
        row = await conn.fetchrow(self._sql["create_run"], *_run_row(run))
        assert row is not None
        if row["created"]:
            return run, True
        if row["run_id"] is not None:
            return _run(row[1:]), False
        # A concurrent creator committed after this statement's snapshot was taken.
        existing = await conn.fetchrow(self._sql["get_run"], run.run_id)
        if existing is None:
            raise StoreError(f"{self!r}: run {run.run_id!r} vanished while it was being created")
        return _run(existing), False

    async def _create_batch(
        self, conn: Conn, runs: list[RunRecord], *, retrying: bool
    ) -> list[Created | BaseException]:
        """Insert the first run of each id in one statement; read the others' stored runs in one more.

        ``retrying`` after a lost connection: a stored run equal to the first caller's in every
        field is the one the lost attempt inserted, so that caller created it (as in ``create_run``).
        """
        first = _firsts(runs, lambda run: run.run_id)
        rows = await conn.fetch(
            self._sql["create_run_batch"], _json_rows([_run_row(runs[i]) for i in first.values()])
        )
        created = {row[0] for row in rows}
        mine = [first[run.run_id] == index and run.run_id in created for index, run in enumerate(runs)]
        wanted = list({run.run_id for run, done in zip(runs, mine, strict=True) if not done})
        stored = (
            {row[0]: _run(row) for row in await conn.fetch(self._sql["get_runs"], wanted)} if wanted else {}
        )
        outcomes: list[Created | BaseException] = []
        for index, run in enumerate(runs):
            found = stored.get(run.run_id)
            if mine[index]:
                outcomes.append((run, True))
            elif found is not None:
                outcomes.append((found, retrying and first[run.run_id] == index and found == run))
            else:  # deleted since it conflicted: as a lone call would, create it
                outcomes.append(await _outcome(self._create_run(conn, run)))
        return outcomes

    async def get_run(self, run_id: str) -> RunRecord | None:
        sql = self._sql["get_run"]
        row = await self._call(f"read run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id))
        return None if row is None else _run(row)

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
            return _run(row)

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
            return await self._update_alone(update)
        return await updates.submit(update)

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
        first = _firsts(updates, lambda update: update.lease.run_id)
        rows = await conn.fetch(
            self._sql["update_run_batch"], _json_rows([_update_row(updates[i]) for i in first.values()])
        )
        updated = {row[0] for row in rows}
        stale = [run_id for run_id in first if run_id not in updated]
        tokens = {row[0]: row[1] for row in await conn.fetch(self._sql["tokens"], stale)} if stale else {}
        outcomes: list[BaseException | None] = []
        for index, update in enumerate(updates):
            lease = update.lease
            if first[lease.run_id] != index:  # a later update of a run in the statement: after it
                outcomes.append(await _outcome(self._update_run(conn, update)))
            elif lease.run_id in updated:
                outcomes.append(None)
            else:
                outcomes.append(LeaseLost.stale(lease.run_id, lease.token, tokens.get(lease.run_id)))
        return outcomes

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        row = await self._call(
            f"cancel run {run_id!r}", lambda conn: conn.fetchrow(self._sql["cancel"], run_id)
        )
        return None if row is None else _run(row)

    async def reset_run(self, run_id: str) -> RunRecord | None:
        sql = self._sql["reset"]
        row = await self._call(f"reset run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id))
        # Only failed and cancelled runs are reset; any other is returned as it is.
        return await self.get_run(run_id) if row is None else _run(row)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if query.statuses is not None:
            if not query.statuses:
                return []
            where.append(f"status = ANY({param(sorted(s.value for s in query.statuses))}::text[])")
        if query.workflow is not None:
            where.append(f"workflow = {param(query.workflow)}")
        if query.id_prefix is not None:
            # starts_with, not LIKE: the prefix may contain % and _ and must match literally.
            where.append(f"starts_with(run_id, {param(query.id_prefix)})")
        if query.created_after is not None:
            where.append(f"created_at >= {param(float(query.created_after))}")
        if query.created_before is not None:
            where.append(f"created_at < {param(float(query.created_before))}")
        if query.updated_before is not None:
            where.append(f"updated_at < {param(float(query.updated_before))}")
        sql = (
            f"SELECT {RUN_COLUMNS} FROM {self._quoted}.runs "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY created_at DESC, run_id LIMIT {param(query.limit)} OFFSET {param(query.offset)}"
        )
        rows = await self._call("list runs", lambda conn: conn.fetch(sql, *params))
        return [_run(row) for row in rows]

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs due at ``now`` (``durable._lifecycle.is_due``), of ``workflows`` if given, oldest
        first: one query on the ``runs_due`` index, whose cost does not grow with the finished runs
        the schema holds."""
        if workflows is None:
            rows = await self._call(
                "list due runs", lambda conn: conn.fetch(self._sql["due"], float(now), limit)
            )
        elif not workflows:
            return []
        else:
            names = sorted(workflows)
            rows = await self._call(
                "list due runs", lambda conn: conn.fetch(self._sql["due_of"], float(now), limit, names)
            )
        return [_run(row) for row in rows]

    async def delete_run(self, run_id: str) -> bool:
        tag = await self._call(
            f"delete run {run_id!r}", lambda conn: conn.execute(self._sql["delete"], run_id)
        )
        return _affected(tag) == 1

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._call(
            f"load the steps of run {run_id!r}", lambda conn: conn.fetch(self._sql["load_steps"], run_id)
        )
        return StepRecord.from_rows(run_id, rows)

    async def _save_step(self, conn: Conn, lease: Lease, step: StepRecord) -> StepRecord:
        values = _step_row(lease, step)
        for _ in range(3):
            # The common case is this one statement: fencing check and first-writer-wins insert.
            if _affected(await conn.execute(self._sql["save_step"], *values)) == 1:
                return step
            row = await conn.fetchrow(self._sql["stored_step"], lease.run_id, step.key)
            assert row is not None
            if row["token"] != lease.token:
                raise await self._stale(conn, lease)
            if row["key"] is not None:
                return StepRecord.from_row(row[1:])
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
        first = _firsts(items, lambda item: (item[0].run_id, item[1].key))
        batch = [_step_row(*items[index]) for index in first.values()]
        rows = await conn.fetch(self._sql["save_step_batch"], _json_rows(batch))
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
        stored = {
            (row[0], row[1]): (row[2], None if row[4] is None else StepRecord.from_row(row[3:]))
            for row in rows
        }
        for index in rest:
            lease, step = items[index]
            token, found = stored[(lease.run_id, step.key)]
            if token != lease.token:
                outcomes[index] = LeaseLost.stale(lease.run_id, lease.token, token)
            elif found is not None and found.status is StepStatus.COMPLETED:
                outcomes[index] = found
            else:
                outcomes[index] = await _outcome(self._save_step(conn, lease, step))

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
            lambda items: self._flush(kind, conns, items), max_batch=BATCH, max_in_flight=FLUSHES_IN_FLIGHT
        )

    async def _flush(self, kind: Batching[I, R], conns: Conns, items: list[I]) -> list[R | BaseException]:
        """A batcher's flush: one outcome per item, as the lone call gives it."""
        if len(items) == 1:
            return [await kind.alone(items[0], conns)]  # its error goes to its caller
        # Chunks go in order: a later call of the same run or key sees what an earlier one wrote.
        chunks = [
            await self._flush_chunk(kind, conns, chunk) for chunk in _by_size(items, BATCH_CHARS, kind.weight)
        ]
        return [outcome for chunk in chunks for outcome in chunk]

    async def _flush_chunk(
        self, kind: Batching[I, R], conns: Conns, items: list[I]
    ) -> list[R | BaseException]:
        if len(items) == 1:
            return [await _outcome(kind.alone(items[0], conns))]
        retry = kind.retry
        try:
            return await self._call(
                kind.what(items),
                lambda conn: kind.together(conn, items),
                None if retry is None else lambda conn: retry(conn, items),
                conns,
            )
        except StoreUnavailable as exc:
            return [exc] * len(items)
        except StoreError:
            # The server refused the statement (a value PostgreSQL cannot store, say): make each
            # call alone, so that only the item at fault gets the error.
            return [await _outcome(kind.alone(item, conns)) for item in items]

    # -- signals -----------------------------------------------------------------

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        sender = secrets.token_hex(8)
        key = wake_key(run_id, name)
        args = (run_id, name, delivery_id, payload, sender, SIGNAL_LOCK_SPACE, self._channel, key)

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
        """Wait on the store's LISTEN connection; while that is down, poll every ``poll_interval``."""
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
                row = await self._call(
                    f"read signal {name!r} of run {run_id!r}",
                    lambda conn: conn.fetchrow(self._sql["nth_signal"], run_id, name, index),
                )
                if row is not None:
                    return _signal(row)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                if listening:
                    wait = SAFETY_POLL
                else:
                    wait, interval = interval, min(interval * 2, self.poll_interval)
                if remaining is not None:
                    wait = min(wait, remaining)
                try:
                    await asyncio.wait_for(event.wait(), wait)
                except TimeoutError:
                    pass


def status_in(statuses: frozenset[RunStatus]) -> str:
    """``status IN ('a', 'b')``, values sorted, as SQL text (a partial index's WHERE clause must be
    implied by the query's own text, not by a parameter's value)."""
    return f"status IN ({', '.join(repr(status.value) for status in sorted(statuses))})"


def _statements(s: str) -> dict[str, str]:
    """Every fixed statement of the store, with the quoted schema ``s`` filled in."""
    # A step's first completed write wins; a failed step is replaced by a later write.
    replace_unless_completed = (
        "ON CONFLICT (run_id, key) DO UPDATE SET task = EXCLUDED.task, "
        "args_digest = EXCLUDED.args_digest, status = EXCLUDED.status, result = EXCLUDED.result, "
        "error = EXCLUDED.error, attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, "
        f"finished_at = EXCLUDED.finished_at WHERE {s}.steps.status <> 'completed'"
    )
    return {
        "token": f"SELECT lease_token FROM {s}.runs WHERE run_id = $1",
        "get_run": f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1",
        # The outer SELECT runs on the statement's snapshot: it sees a row that existed before,
        # not the one the CTE inserts (that one is `run` itself).
        "create_run": (
            f"WITH ins AS (INSERT INTO {s}.runs ({RUN_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING 1) "
            f"SELECT EXISTS (SELECT 1 FROM ins) AS created, r.* FROM (SELECT 1) AS one "
            f"LEFT JOIN (SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1) AS r ON TRUE"
        ),
        # create_run for many runs at once; the caller sends no run id twice. The rows it did not
        # insert are read afterwards, by a statement whose snapshot sees every committed creator.
        "create_run_batch": (
            f"INSERT INTO {s}.runs ({RUN_COLUMNS}) "
            "SELECT v->>0, v->>1, v->>2, v->>3, v->>4, (v->>5)::float8, (v->>6)::float8, v->>7, v->>8, "
            "v->>9, (v->>10)::int8, (v->>11)::float8, (v->>12)::float8, (v->>13)::float8, v->>14, "
            "(v->>15)::boolean, v->>16 FROM jsonb_array_elements($1::jsonb) AS e(v) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING run_id"
        ),
        "get_runs": f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = ANY($1::text[])",
        # LIVE_LEASE is strict (expires after now): a lease given back with renew_lease(lease, 0)
        # is claimable at once.
        "claim": (
            f"UPDATE {s}.runs SET status = 'running', lease_token = lease_token + 1, owner = $2, "
            f"lease_expires_at = {NOW} + $3::float8, wake_at = NULL, activity = NULL, updated_at = {NOW}, "
            f"claim_id = $4 WHERE run_id = $1 AND {status_in(CLAIMABLE)} AND NOT {LIVE_LEASE} "
            "RETURNING lease_token, lease_expires_at"
        ),
        "claimed": f"SELECT lease_token, lease_expires_at FROM {s}.runs WHERE run_id = $1 AND claim_id = $2",
        "renew": (
            f"UPDATE {s}.runs SET owner = $3, lease_expires_at = {NOW} + $4::float8, "
            "activity = coalesce($5, activity) "
            f"WHERE run_id = $1 AND lease_token = $2 RETURNING {RUN_COLUMNS}"
        ),
        "update": (
            f"UPDATE {s}.runs SET status = $3, result = $4, error = $5, wake_at = $6, activity = $7, "
            f"updated_at = {NOW} WHERE run_id = $1 AND lease_token = $2"
        ),
        "update_release": (
            f"UPDATE {s}.runs SET status = $3, result = $4, error = $5, wake_at = $6, activity = $7, "
            f"updated_at = {NOW}, owner = NULL, lease_expires_at = NULL "
            "WHERE run_id = $1 AND lease_token = $2"
        ),
        # update/update_release for many runs at once, fenced row by row; the caller sends no run
        # id twice (an UPDATE ... FROM applies one input row per target row, unpredictably which).
        "update_run_batch": (
            f"UPDATE {s}.runs AS r SET status = i.status, result = i.result, error = i.error, "
            f"wake_at = i.wake_at, activity = i.activity, updated_at = {NOW}, "
            "owner = CASE WHEN i.release THEN NULL ELSE r.owner END, "
            "lease_expires_at = CASE WHEN i.release THEN NULL ELSE r.lease_expires_at END "
            "FROM (SELECT v->>0 AS run_id, (v->>1)::int8 AS token, v->>2 AS status, v->>3 AS result, "
            "v->>4 AS error, (v->>5)::float8 AS wake_at, (v->>6)::boolean AS release, v->>7 AS activity "
            "FROM jsonb_array_elements($1::jsonb) AS e(v)) AS i "
            "WHERE r.run_id = i.run_id AND r.lease_token = i.token RETURNING r.run_id"
        ),
        "tokens": f"SELECT run_id, lease_token FROM {s}.runs WHERE run_id = ANY($1::text[])",
        "cancel": (
            f"UPDATE {s}.runs SET cancel_requested = TRUE, updated_at = {NOW}, status = CASE "
            f"WHEN status NOT IN ('completed', 'cancelled') AND NOT {LIVE_LEASE} THEN 'cancelled' "
            f"ELSE status END WHERE run_id = $1 RETURNING {RUN_COLUMNS}"
        ),
        "reset": (
            f"UPDATE {s}.runs SET status = 'pending', cancel_requested = FALSE, error = NULL, "
            f"wake_at = NULL, activity = NULL, updated_at = {NOW} WHERE run_id = $1 "
            f"AND status IN ('failed', 'cancelled') RETURNING {RUN_COLUMNS}"
        ),
        # Exactly durable._lifecycle.is_due, oldest first, on the runs_due partial index (the
        # status list is written as the index's WHERE clause is, so the planner may use it).
        "due": (
            f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE {status_in(DUE_STATUSES)} "
            "AND NOT (owner IS NOT NULL AND coalesce(lease_expires_at, 0) > $1) "
            "AND (status <> 'waiting' OR owner IS NOT NULL OR wake_at <= $1) "
            "ORDER BY created_at, run_id LIMIT $2"
        ),
        # due with workflows=: only runs of those workflows, still read from runs_due.
        "due_of": (
            f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE {status_in(DUE_STATUSES)} "
            "AND NOT (owner IS NOT NULL AND coalesce(lease_expires_at, 0) > $1) "
            "AND (status <> 'waiting' OR owner IS NOT NULL OR wake_at <= $1) "
            "AND workflow = ANY($3::text[]) ORDER BY created_at, run_id LIMIT $2"
        ),
        "delete": (
            f"WITH steps AS (DELETE FROM {s}.steps WHERE run_id = $1), "
            f"signals AS (DELETE FROM {s}.signals WHERE run_id = $1) "
            f"DELETE FROM {s}.runs WHERE run_id = $1"
        ),
        # StepRecord.from_rows's columns: every step column but the run id.
        "load_steps": (
            f"SELECT {STEP_COLUMNS.removeprefix('run_id, ')} FROM {s}.steps "
            "WHERE run_id = $1 ORDER BY finished_at, key"
        ),
        # FOR SHARE locks the run row until commit, so a claim (which updates it) waits for this
        # checkpoint, and one that committed first makes the re-checked token differ: no write.
        "save_step": (
            f"INSERT INTO {s}.steps ({STEP_COLUMNS}) "
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 "
            f"FROM {s}.runs WHERE run_id = $1 AND lease_token = $11 FOR SHARE {replace_unless_completed}"
        ),
        # save_step for many runs at once: the same fencing, row by row (FOR SHARE OF r locks
        # each run row to commit; a claim that committed first fails the re-checked join).
        # RETURNING names the rows written; the caller sends no (run_id, key) twice.
        "save_step_batch": (
            f"INSERT INTO {s}.steps ({STEP_COLUMNS}) "
            "SELECT i.run_id, i.key, i.task, i.args_digest, i.status, i.result, i.error, i.attempts, "
            "i.started_at, i.finished_at "
            "FROM (SELECT v->>0 AS run_id, v->>1 AS key, v->>2 AS task, v->>3 AS args_digest, "
            "v->>4 AS status, v->>5 AS result, v->>6 AS error, (v->>7)::int4 AS attempts, "
            "(v->>8)::float8 AS started_at, (v->>9)::float8 AS finished_at, (v->>10)::int8 AS token "
            "FROM jsonb_array_elements($1::jsonb) AS e(v)) AS i "
            f"JOIN {s}.runs AS r ON r.run_id = i.run_id AND r.lease_token = i.token FOR SHARE OF r "
            f"{replace_unless_completed} RETURNING run_id, key"
        ),
        "stored_steps": (
            f"SELECT i.run_id, i.key, r.lease_token, st.* FROM unnest($1::text[], $2::text[]) "
            f"AS i(run_id, key) LEFT JOIN {s}.runs AS r ON r.run_id = i.run_id "
            f"LEFT JOIN (SELECT {STEP_COLUMNS} FROM {s}.steps) AS st "
            "ON st.run_id = i.run_id AND st.key = i.key"
        ),
        "stored_step": (
            f"SELECT r.token, st.* FROM (SELECT (SELECT lease_token FROM {s}.runs WHERE run_id = $1) "
            f"AS token) AS r LEFT JOIN (SELECT {STEP_COLUMNS} FROM {s}.steps "
            "WHERE run_id = $1 AND key = $2) AS st ON TRUE"
        ),
        # The advisory lock (held to commit) orders a run's senders, so a delivery becomes
        # visible only after every delivery with a smaller seq: the n-th delivery never changes.
        "send_signal": (
            "WITH lock AS (SELECT pg_advisory_xact_lock($6::int, hashtext($1))), "
            f"ins AS (INSERT INTO {s}.signals (run_id, name, delivery_id, payload, sent_at, sender) "
            f"SELECT $1, $2, $3, $4, {NOW}, $5 FROM lock "
            "ON CONFLICT (run_id, name, delivery_id) DO NOTHING RETURNING sent_at), "
            f"woken AS (UPDATE {s}.runs SET wake_at = ins.sent_at, updated_at = ins.sent_at FROM ins "
            f"WHERE {s}.runs.run_id = $1 AND {s}.runs.status = 'waiting' RETURNING 1), "
            "notified AS (SELECT pg_notify($7, $8) FROM ins) "
            "SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM notified) "
            "+ 0 * (SELECT count(*) FROM woken) = 1"
        ),
        "sent_by": (
            f"SELECT EXISTS (SELECT 1 FROM {s}.signals WHERE run_id = $1 AND name = $2 "
            "AND delivery_id = $3 AND sender = $4)"
        ),
        "signals": f"SELECT {SIGNAL_COLUMNS} FROM {s}.signals WHERE run_id = $1 ORDER BY seq",
        "signals_named": (
            f"SELECT {SIGNAL_COLUMNS} FROM {s}.signals WHERE run_id = $1 AND name = $2 ORDER BY seq"
        ),
        "nth_signal": (
            f"SELECT {SIGNAL_COLUMNS} FROM {s}.signals WHERE run_id = $1 AND name = $2 "
            "ORDER BY seq OFFSET $3 LIMIT 1"
        ),
    }


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo (see ``_create_pool``)."""
