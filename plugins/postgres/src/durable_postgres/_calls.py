"""The base every part of ``PostgresStore`` builds on: the attributes the parts share, opening
connections, and how one operation runs (``_call``: a pooled connection, transient failures
retried with backoff within ``operation_timeout``, a connection in an unknown state terminated).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import asyncpg

from durable._decode import run_from_row
from durable.errors import LeaseLost, StoreError, StoreUnavailable
from durable.store import Lease, RunRecord, Store
from durable_postgres._conns import PER_CALL, Conns, HeldConnection, terminate
from durable_postgres._errors import Failure, classify, describe

if TYPE_CHECKING:
    from durable_postgres._conns import Conn
    from durable_postgres._listener import Listener
    from durable_postgres._url import ConnectionTarget

T = TypeVar("T")
log = logging.getLogger("durable_postgres")

APPLICATION_NAME = "durable-postgres"
SUSPECT_AFTER = 1.0
"""Seconds without an answer after which a statement its caller cancelled counts as a sign of
dead connections, as a timeout does (see ``PostgresCalls._suspect``)."""


def affected(status: str) -> int:
    """The row count of an ``INSERT 0 n`` / ``UPDATE n`` / ``DELETE n`` command tag."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresCalls(Store):
    """Connections and the retry loop of one ``PostgresStore`` (the class every part of it extends)."""

    # Set by ``PostgresStore.__init__`` and ``open``; declared here for the parts that read them.
    schema: str
    min_size: int
    max_size: int
    command_timeout: float
    connect_timeout: float
    retries: int
    operation_timeout: float
    _target: ConnectionTarget
    _quoted: str
    _channel: str
    _label: str
    _pool: asyncpg.Pool | None
    _listener: Listener | None
    _held: list[HeldConnection]
    _tasks: set[asyncio.Task[None]]
    _sql: dict[str, str]

    @property
    def _round_trip(self) -> float:
        """How long one attempt of an operation may wait."""
        return self.operation_timeout / 2

    # -- connections ---------------------------------------------------------------

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


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo (see ``_create_pool``)."""
