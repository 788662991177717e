"""``SQLiteStore``: one long-lived connection, WAL, and group commit of concurrent writes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from durable._decode import RUN_FIELDS, run_from_row
from durable.errors import ConfigurationError, LeaseLost, StoreError, StoreNotFound, StoreUnavailable
from durable.store import (
    DEFAULT_QUEUE,
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
    Store,
    StreamItems,
)
from durable_sqlite import CAPABILITIES, _outputs, _queues
from durable_sqlite._connection import SQLITE_CANTOPEN, SQLITE_READONLY, Connection, Op, is_busy, primary_code
from durable_sqlite._queries import (
    CLAIM_RUN,
    DUE_RUNS_ANY,
    DUE_RUNS_OF,
    LOAD_STEP,
    LOAD_STEPS,
    RUN_COLUMNS,
    SAVE_STEP,
    SIGNAL_COLUMNS,
)
from durable_sqlite._queries import list_runs as listing
from durable_sqlite._read_only import (
    NeedsImmutable,
    NotWritable,
    known_reason,
    log_holds_commits,
    read_only_error,
)
from durable_sqlite._read_only import uri as read_only_uri
from durable_sqlite._rows import journal, signals
from durable_sqlite._schema import SCHEMA_VERSION, migrate, read_version
from durable_sqlite._watcher import ChangeWatcher

T = TypeVar("T")
log = logging.getLogger("durable.store")

SYNCHRONOUS_MODES = ("off", "normal", "full", "extra")


INSERT_RUN = (
    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join('?' * len(RUN_FIELDS))}) "
    "ON CONFLICT (run_id) DO NOTHING"
)


def _stale(lease: Lease, conn: sqlite3.Connection) -> LeaseLost:
    row = conn.execute("SELECT lease_token FROM runs WHERE run_id = ?", (lease.run_id,)).fetchone()
    return LeaseLost.stale(lease.run_id, lease.token, row[0] if row else None)


class SQLiteStore(Store):
    """A store in one SQLite file, shareable by several processes on one host.

    ``synchronous="normal"`` (the default) makes a committed step survive a process
    crash; after a power loss the last few commits may be lost. ``"full"`` fsyncs
    every commit and survives power loss, at about 5x the cost of a write.

    A full disk, an I/O error or a lack of memory makes a write ``StoreUnavailable`` (rolled
    back whole; the engine retries the write, never the task body). A file this process cannot
    write (a read-only mount, an immutable file, no write permission) opens for reading only,
    and each write raises ``StoreError`` saying the file is read-only. So does any file with
    ``read_only=True`` (``?mode=ro`` in the URL, ``open(read_only=True)``): nothing is written to it,
    not even a schema upgrade (an older file is refused) or the switch to WAL.
    """

    name = "sqlite"
    capabilities = CAPABILITIES  # declared in the package, which lists backends without the driver
    poll_interval = 1.0

    def __init__(
        self,
        path: str | os.PathLike[str] = "durable.db",
        *,
        synchronous: str = "normal",
        busy_timeout: float = 10.0,
        read_only: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.read_only = bool(read_only)
        if synchronous.lower() not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"SQLiteStore({self.path!r}): synchronous={synchronous!r} is not one of {SYNCHRONOUS_MODES}"
            )
        self.synchronous = synchronous.lower()
        self.busy_timeout = float(busy_timeout)
        self._label = repr(self)
        """Names this store in errors and corrupt records (``durable._decode``)."""
        self._db: Connection | None = None
        self._watcher = ChangeWatcher(self)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``?synchronous=full&busy_timeout=5``,
        ``?mode=ro`` (``read_only``)."""
        parts = urlsplit(url)
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if parts.netloc:  # sqlite://relative.db, a common slip
            path = unquote(parts.netloc) + unquote(parts.path)
        if not path:
            raise ConfigurationError(f"store URL {url!r} names no file; write sqlite:///path/to/file.db")
        query = dict(parse_qsl(parts.query))
        kwargs: dict[str, Any] = {}
        if "synchronous" in query:
            kwargs["synchronous"] = query.pop("synchronous")
        if "busy_timeout" in query:
            kwargs["busy_timeout"] = float(query.pop("busy_timeout"))
        if "mode" in query:
            mode = query.pop("mode")
            if mode not in ("ro", "rw"):
                raise ConfigurationError(f"store URL {url!r}: mode={mode!r} is not 'ro' (read-only) or 'rw'")
            kwargs["read_only"] = mode == "ro"
        if query:
            raise ConfigurationError(f"store URL {url!r}: unknown options {sorted(query)}")
        return cls(path, **{**kwargs, **options})

    # -- lifecycle ---------------------------------------------------------------

    async def open(self, *, create: bool = True, read_only: bool | None = None) -> None:
        """Open the file, creating or upgrading it; a file this process cannot write opens for
        reading only (see ``_read_only``), and then every write raises ``StoreError``. With
        ``create=False`` a missing file is ``StoreNotFound`` (and is not created). ``read_only``
        (default: the store's) opens it for reading only whatever its permissions (``durable
        replay``: the store may be production): a missing file is ``StoreNotFound``."""
        if self._db is not None:
            return
        read_only = self.read_only if read_only is None else read_only
        if (read_only or not create) and not self._exists():
            raise StoreNotFound(f"store file {self.path!r} does not exist")
        if read_only:
            self._db = await self._open_read_only("it was opened for reading only (mode=ro)")
            return
        inline = self.synchronous != "full"
        db = Connection(self.path, wait_for_lock=self.busy_timeout, inline_commits=inline)
        try:
            await db.open(self._prepare)
        except NotWritable as exc:
            db = await self._open_read_only(exc.why)
        self._db = db

    def _exists(self) -> bool:
        return os.path.exists(self.path)

    def _prepare(self, db: sqlite3.Connection) -> None:
        # Opening runs on aiosqlite's thread, where waiting for another process is fine. Some
        # lock conflicts while several openers switch a new file to WAL bypass SQLite's busy
        # handler, so the whole preparation is retried until busy_timeout.
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                read_version(db, self.path)  # refuse foreign or newer files before any write to them
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
                migrate(db, self.path)
                break
            except sqlite3.OperationalError as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if is_busy(exc) and time.monotonic() <= deadline:
                    time.sleep(0.005)
                    continue
                code = primary_code(exc)
                if os.path.exists(self.path) and code in (SQLITE_READONLY, SQLITE_CANTOPEN):
                    # SQLite saying read-only, or a log it cannot create beside a file that exists
                    # where this process can tell why: a store to read, not a broken one.
                    why = known_reason(self.path)
                    if code == SQLITE_READONLY or why is not None:
                        raise NotWritable(why or f"SQLite cannot write it: {exc}") from exc
                raise
        db.execute("PRAGMA busy_timeout = 0")  # see _connection: never wait for a lock on the loop

    async def _open_read_only(self, why: str) -> Connection:
        inline = self.synchronous != "full"
        for immutable in (False, True):
            if immutable and log_holds_commits(self.path):
                raise read_only_error(
                    self.path,
                    f"{why}, and its write-ahead log {self.path + '-wal'!r} holds commits SQLite reads only "
                    "where it may create the log's index; open it once where it can be written",
                )
            db = Connection(
                self.path,
                wait_for_lock=self.busy_timeout,
                inline_commits=inline,
                uri=read_only_uri(self.path, immutable=immutable),
                read_only=why,
            )
            try:
                await db.open(self._prepare_read_only)
            except NeedsImmutable:
                continue
            log.info("%r opened for reading only: %s", self, why)
            return db
        raise AssertionError("unreachable: the immutable attempt returns or raises")

    def _prepare_read_only(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        try:
            version = read_version(db, self.path)
        except sqlite3.OperationalError as exc:
            if primary_code(exc) == SQLITE_CANTOPEN:
                raise NeedsImmutable from exc  # no log index, and none can be created
            raise
        if version != SCHEMA_VERSION:
            what = (
                "is empty"
                if version == 0
                else f"holds schema {version}, which must be upgraded to {SCHEMA_VERSION}"
            )
            raise StoreError(
                f"SQLiteStore({self.path!r}) is read-only and {what} before this durable can read it; "
                "open it once where it can be written"
            )
        db.execute("PRAGMA busy_timeout = 0")

    async def close(self) -> None:
        db, self._db = self._db, None
        await self._watcher.stop()
        if db is not None:
            await db.close()

    def _connection(self) -> Connection:
        if self._db is None:
            raise StoreUnavailable(f"SQLiteStore({self.path!r}) is not open (call open() or use Workflow)")
        return self._db

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._connection().read(fn)

    async def _write(self, op: Op) -> Any:
        return await self._connection().write(op)

    # -- runs --------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        def op(db: sqlite3.Connection) -> tuple[RunRecord, bool]:
            if db.execute(INSERT_RUN, _queues.run_values(run)).rowcount == 1:
                return run, True
            row = db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
            return run_from_row(self._label, row), False

        result: tuple[RunRecord, bool] = await self._write(op)
        if result[1] and run.status is RunStatus.PENDING:
            self.wake_queue_waiters(DEFAULT_QUEUE)
        return result

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = await self._read(
            lambda db: db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        )
        return None if row is None else run_from_row(self._label, row)

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        def op(db: sqlite3.Connection) -> Lease | None:
            now = time.time()
            row = db.execute(CLAIM_RUN, (owner, now + lease_seconds, now, run_id, now)).fetchone()
            return None if row is None else Lease(run_id, owner, row[0], now + lease_seconds)

        lease: Lease | None = await self._write(op)
        return lease

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        def op(db: sqlite3.Connection) -> RunRecord:
            now = time.time()
            row = db.execute(
                "UPDATE runs SET owner = ?, lease_expires_at = ?, activity = coalesce(?, activity) "
                f"WHERE run_id = ? AND lease_token = ? RETURNING {RUN_COLUMNS}",
                (lease.owner, now + lease_seconds, activity, lease.run_id, lease.token),
            ).fetchone()
            if row is None:
                raise _stale(lease, db)
            return run_from_row(self._label, row)

        run: RunRecord = await self._write(op)
        if lease_seconds <= 0:
            self.wake_queue_waiters()  # a lease given back frees a queue slot
        return run

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
        release_sql = ", owner = NULL, lease_expires_at = NULL" if release else ""

        def op(db: sqlite3.Connection) -> None:
            cursor = db.execute(
                "UPDATE runs SET status = ?, result = ?, error = ?, wake_at = ?, activity = ?, "
                f"updated_at = ?{release_sql} "
                "WHERE run_id = ? AND lease_token = ?",
                (status.value, result, error, wake_at, activity, time.time(), lease.run_id, lease.token),
            )
            if cursor.rowcount == 0:
                raise _stale(lease, db)

        await self._write(op)
        if release or status.is_final:
            self.wake_queue_waiters()  # a queue slot may be free (a no-op with nobody waiting)
        if status.is_final:
            self.wake_output_waiters(lease.run_id)  # readers of its streams end

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        def op(db: sqlite3.Connection) -> RunRecord | None:
            now = time.time()
            row = db.execute(
                "UPDATE runs SET cancel_requested = 1, updated_at = ?, status = CASE "
                "WHEN status NOT IN ('completed', 'cancelled') "
                "AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?) "
                f"THEN 'cancelled' ELSE status END WHERE run_id = ? RETURNING {RUN_COLUMNS}",
                (now, now, run_id),
            ).fetchone()
            return None if row is None else run_from_row(self._label, row)

        run: RunRecord | None = await self._write(op)
        if run is not None and run.status.is_final:
            self.wake_output_waiters(run_id)  # cancelled at once: readers of its streams end
        return run

    async def reset_run(self, run_id: str) -> RunRecord | None:
        def op(db: sqlite3.Connection) -> RunRecord | None:
            row = db.execute(
                "UPDATE runs SET status = 'pending', cancel_requested = 0, error = NULL, wake_at = NULL, "
                f"activity = NULL, updated_at = ? WHERE run_id = ? AND status IN ('failed', 'cancelled') "
                f"RETURNING {RUN_COLUMNS}",
                (time.time(), run_id),
            ).fetchone()
            return None if row is None else run_from_row(self._label, row)

        run: RunRecord | None = await self._write(op)
        if run is not None:
            self.wake_queue_waiters()
        # Only failed and cancelled runs are reset; any other is returned as it is.
        return run if run is not None else await self.get_run(run_id)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        if query.statuses is not None and not query.statuses:
            return []
        sql, params = listing(query)
        rows = await self._read(lambda db: db.execute(sql, params).fetchall())
        label = self._label
        return [run_from_row(label, row) for row in rows]

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs due at ``now`` (``durable._lifecycle.is_due``), of ``workflows`` if given, oldest
        first: one query on the ``runs_active`` and ``runs_parked`` indexes (``DUE_RUNS``), whose
        cost grows neither with the finished runs the file holds nor with the parked ones."""
        params: tuple[float, int] | tuple[float, int, str]
        if workflows is None:
            sql, params = DUE_RUNS_ANY, (float(now), limit)
        elif not workflows:
            return []
        else:
            sql, params = DUE_RUNS_OF, (float(now), limit, json.dumps(sorted(workflows)))
        rows = await self._read(lambda db: db.execute(sql, params).fetchall())
        label = self._label
        return [run_from_row(label, row) for row in rows]

    async def delete_run(self, run_id: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM signals WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM queue_entries WHERE run_id = ?", (run_id,))
            _outputs.delete(db, run_id)
            return db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount == 1

        deleted: bool = await self._write(op)
        self.wake_output_waiters(run_id)
        return deleted

    # -- queues (docs/QUEUES.md; the SQL is in _queues) ---------------------------

    async def enqueue_run(self, run: RunRecord, entry: QueuedRun) -> tuple[RunRecord, Enqueued]:
        label = self._label
        result: tuple[RunRecord, Enqueued] = await self._write(
            lambda db: _queues.enqueue(label, db, run, entry, INSERT_RUN)
        )
        if result[1] is not Enqueued.EXISTS:
            self.wake_queue_waiters(entry.queue)
        return result

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
        """One write transaction (``BEGIN IMMEDIATE``: the file's write lock serialises every
        claimer, in every process) counts the queue's live leases and rate window and claims."""
        if limit <= 0 or (workflows is not None and not workflows):
            return []
        label = self._label
        claimed: list[tuple[RunRecord, Lease]] = await self._write(
            lambda db: _queues.claim(label, db, queue, now, owner, lease_seconds, limits, limit, workflows)
        )
        return claimed

    async def get_queued(self, run_id: str) -> QueuedRun | None:
        return await self._read(lambda db: _queues.get_entry(db, run_id))

    async def queue_stats(self, queue: str, now: float, *, window: float | None = None) -> QueueStats:
        return await self._read(lambda db: _queues.stats(db, queue, now, window))

    async def list_queues(self) -> list[str]:
        return await self._read(_queues.names)

    async def wait_for_queues(self, queues: Collection[str], timeout: float) -> None:
        """Wakes on this process's enqueues and releases, on other processes' commits (the
        store's watcher of ``PRAGMA data_version``), and at the next delayed run's time."""
        wall = time.time()
        ahead = await self._read(lambda db: _queues.next_not_before(db, queues, wall))
        if ahead is not None:
            timeout = min(timeout, max(0.0, ahead - wall))
        self._watch()
        await super().wait_for_queues(queues, timeout)

    # -- events and streams (docs/STREAMS.md; the SQL is in _outputs) ------------

    async def set_event(self, lease: Lease, key: str, value: str) -> None:
        await self._write(lambda db: _outputs.set_event(db, lease, key, value))
        self.wake_output_waiters(lease.run_id)

    async def get_events(self, run_id: str) -> dict[str, str]:
        return await self._read(lambda db: _outputs.events(db, run_id))

    async def append_stream(
        self, lease: Lease, key: str, value: str, *, write_id: str | None = None
    ) -> int | None:
        offset: int | None = await self._write(lambda db: _outputs.append(db, lease, key, value, write_id))
        self.wake_output_waiters(lease.run_id)
        return offset

    async def close_stream(self, lease: Lease, key: str) -> None:
        await self._write(lambda db: _outputs.close(db, lease, key))
        self.wake_output_waiters(lease.run_id)

    async def read_stream(self, run_id: str, key: str, offset: int, limit: int = 1000) -> StreamItems:
        return await self._read(lambda db: _outputs.read(db, run_id, key, offset, limit))

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]]:
        return await self._read(lambda db: _outputs.streams(db, run_id))

    @contextlib.asynccontextmanager
    async def watch_output(self, run_id: str) -> AsyncIterator[OutputWatch]:
        """Woken by this store's writes, and by other processes' through the change watcher,
        which compares the run's output counter and status with those read as the watch began."""
        async with super().watch_output(run_id) as watch:
            await self._watcher.watch_run(run_id)
            yield watch

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._read(lambda db: db.execute(LOAD_STEPS, (run_id,)).fetchall())
        return journal(self._label, run_id, rows)

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        def op(db: sqlite3.Connection) -> StepRecord:
            # One statement: the fencing check and the first-completed-writer-wins insert.
            cursor = db.execute(
                SAVE_STEP,
                (
                    lease.run_id, step.key, step.task, step.args_digest, step.status.value, step.result,
                    step.error, step.attempts, step.started_at, step.finished_at, step.version, lease.run_id,
                    lease.token,
                ),
            )  # fmt: skip
            if cursor.rowcount == 1:
                return step
            token = db.execute("SELECT lease_token FROM runs WHERE run_id = ?", (lease.run_id,)).fetchone()
            if token is None or token[0] != lease.token:
                raise _stale(lease, db)
            row = db.execute(LOAD_STEP, (lease.run_id, step.key)).fetchone()
            return journal(self._label, lease.run_id, [row])[0]

        stored: StepRecord = await self._write(op)
        return stored

    # -- signals -----------------------------------------------------------------

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "INSERT INTO signals (run_id, name, delivery_id, payload, sent_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (run_id, name, delivery_id) DO NOTHING",
                (run_id, name, delivery_id, payload, now),
            )
            if cursor.rowcount == 0:
                return False
            db.execute(
                "UPDATE runs SET wake_at = ?, updated_at = ? WHERE run_id = ? AND status = 'waiting'",
                (now, now, run_id),
            )
            return True

        recorded: bool = await self._write(op)
        if recorded:
            self.wake_local_waiters(run_id, name)
            self.wake_queue_waiters()  # a queued run parked on it may be due now
        return recorded

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        params: tuple[str, ...]
        if name is None:
            sql, params = f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE run_id = ? ORDER BY seq", (run_id,)
        else:
            sql = f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE run_id = ? AND name = ? ORDER BY seq"
            params = (run_id, name)
        rows = await self._read(lambda db: db.execute(sql, params).fetchall())
        return signals(self._label, run_id, rows)

    async def wait_for_signal(
        self, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        # Deliveries from this process wake waiters directly (send_signal); deliveries from
        # other processes through the store's one watcher of PRAGMA data_version.
        self._watcher.start(hurry=True)
        return await super().wait_for_signal(run_id, name, index, timeout)

    def _watch(self) -> None:
        self._watcher.start()

    def _has_queue_waiters(self) -> bool:
        return bool(self.__dict__.get("_queue_waiters"))

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"
