"""``SQLiteStore``: one long-lived connection, WAL, and group commit of concurrent writes."""

from __future__ import annotations

import asyncio
import json
import operator
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from durable._decode import RUN_FIELDS, decode_failure, run_from_row
from durable._lifecycle import CLAIMABLE, DUE_STATUSES
from durable.errors import ConfigurationError, LeaseLost, StoreNotFound, StoreUnavailable
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
from durable_sqlite._connection import Connection, Op, is_busy
from durable_sqlite._schema import migrate, read_version

T = TypeVar("T")

RUN_COLUMNS = ", ".join(RUN_FIELDS)
"""A run row's columns in the order ``durable._decode.run_from_row`` reads them."""
STEP_COLUMNS = "run_id, key, task, args_digest, status, result, error, attempts, started_at, finished_at"
WATCH_INTERVAL = 0.01
"""Seconds between checks for commits by other processes while a signal wait is open."""
SIGNAL_COLUMNS = "run_id, name, delivery_id, payload, seq, sent_at"
SYNCHRONOUS_MODES = ("off", "normal", "full", "extra")


def status_in(statuses: frozenset[RunStatus]) -> str:
    """``status IN ('a', 'b')`` with the values sorted: SQL text, not parameters, so that a query
    repeating a partial index's WHERE term word for word may use that index."""
    return f"status IN ({', '.join(repr(status.value) for status in sorted(statuses))})"


# A claim takes a run in CLAIMABLE whose lease is not live: strictly before now means live, so a
# lease given back with renew_lease(lease, 0) (it expires now) is claimable at once.
CLAIM_RUN = (
    "UPDATE runs SET status = 'running', lease_token = lease_token + 1, owner = ?, "
    "lease_expires_at = ?, wake_at = NULL, activity = NULL, updated_at = ? "
    f"WHERE run_id = ? AND {status_in(CLAIMABLE)} "
    "AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?) "
    "RETURNING lease_token"
)

# Exactly the runs durable._lifecycle.is_due accepts, oldest first, read from the runs_due partial
# index (only runs in DUE_STATUSES: finished runs are never read). INDEXED BY makes the statement
# fail, rather than quietly scan the table, if the index could not serve it.
DUE_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM runs INDEXED BY runs_due WHERE {status_in(DUE_STATUSES)} "
    "AND NOT (owner IS NOT NULL AND coalesce(lease_expires_at, 0) > ?1) "
    "AND (status <> 'waiting' OR owner IS NOT NULL OR wake_at <= ?1) "
    "{workflows}ORDER BY created_at, run_id LIMIT ?2"
)
DUE_RUNS_ANY = DUE_RUNS.format(workflows="")
# With workflows=: only runs of those workflows (a JSON array parameter: one statement text however
# many names), still read from runs_due, so other workflows' finished runs are not read either.
DUE_RUNS_OF = DUE_RUNS.format(workflows="AND workflow IN (SELECT value FROM json_each(?3)) ")


# A journal in StepRecord.from_rows's column order, by key: the primary-key index gives that order
# for free. Then sorted by finish time in Python (stable: ties stay in key order), not by ORDER BY:
# SQLite sorts through a temporary b-tree, which costs more per row (measured on 1,000-step runs).
LOAD_STEPS = f"SELECT {STEP_COLUMNS.removeprefix('run_id, ')} FROM steps WHERE run_id = ? ORDER BY key"
_FINISHED_AT = operator.itemgetter(8)

# The fencing check and the first-completed-writer-wins insert, in one statement. Built once:
# every checkpoint runs it, and sqlite3 finds its prepared statement by the text.
SAVE_STEP = (
    f"INSERT INTO steps ({STEP_COLUMNS}) SELECT ?,?,?,?,?,?,?,?,?,? "
    "WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND lease_token = ?) "
    "ON CONFLICT (run_id, key) DO UPDATE SET task = excluded.task, "
    "args_digest = excluded.args_digest, status = excluded.status, result = excluded.result, "
    "error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at, "
    "finished_at = excluded.finished_at WHERE steps.status <> 'completed'"
)


_STEP_STATUSES = frozenset(status.value for status in StepStatus)
_STEP_FIELDS = STEP_COLUMNS.split(", ")[1:]


def _journal(store: str, run_id: str, rows: list[Any]) -> list[StepRecord]:
    """Run ``run_id``'s steps from ``LOAD_STEPS`` rows, in finish order; ``StoreCorrupted`` naming
    the step and field if a row is not what durable writes (edited by hand, or damaged)."""
    for key, task, digest, status, result, error, attempts, started_at, finished_at in rows:
        # One pass of type checks (SQLite's column affinity makes REAL columns hold floats and
        # TEXT columns text, unless a row was written with other types on purpose).
        if not (
            type(key) is str and type(task) is str and type(digest) is str and status in _STEP_STATUSES
            and (type(result) is str or (result is None and status != "completed"))
            and (error is None or type(error) is str) and type(attempts) is int
            and type(started_at) is float and type(finished_at) is float
        ):  # fmt: skip
            raise _bad_step(
                store, run_id, (key, task, digest, status, result, error, attempts, started_at, finished_at)
            )
    rows.sort(key=_FINISHED_AT)  # by (finished_at, key): see LOAD_STEPS
    return StepRecord.from_rows(run_id, rows)


def _bad_step(store: str, run_id: str, row: Sequence[Any]) -> Exception:
    values = dict(zip(_STEP_FIELDS, row, strict=True))
    checks: dict[str, Callable[[Any], bool]] = {
        "key": lambda v: type(v) is str,
        "task": lambda v: type(v) is str,
        "args_digest": lambda v: type(v) is str,
        "status": lambda v: v in _STEP_STATUSES,
        "result": lambda v: type(v) is str or (v is None and values["status"] != "completed"),
        "error": lambda v: v is None or type(v) is str,
        "attempts": lambda v: type(v) is int,
        "started_at": lambda v: type(v) is float,
        "finished_at": lambda v: type(v) is float,
    }
    field = next(name for name, ok in checks.items() if not ok(values[name]))
    key = values["key"]
    return decode_failure(
        store,
        run_id,
        f"step {key!r}: {field}",
        ValueError(f"holds {values[field]!r:.60}, not what durable writes"),
    )


def _bad_signal(store: str, run_id: str, row: Sequence[Any]) -> Exception:
    kinds = {"name": str, "delivery_id": str, "payload": str, "seq": int, "sent_at": float}
    values = dict(zip(SIGNAL_COLUMNS.split(", "), row, strict=True))
    field = next(name for name, kind in kinds.items() if type(values[name]) is not kind)
    where = f"signal {values['name']!r} delivery {values['delivery_id']!r}: {field}"
    return decode_failure(
        store, run_id, where, ValueError(f"holds {values[field]!r:.60}, not a {kinds[field].__name__}")
    )


def _stale(lease: Lease, conn: sqlite3.Connection) -> LeaseLost:
    row = conn.execute("SELECT lease_token FROM runs WHERE run_id = ?", (lease.run_id,)).fetchone()
    return LeaseLost.stale(lease.run_id, lease.token, row[0] if row else None)


class SQLiteStore(Store):
    """A store in one SQLite file, shareable by several processes on one host.

    ``synchronous="normal"`` (the default) makes a committed step survive a process
    crash; after a power loss the last few commits may be lost. ``"full"`` fsyncs
    every commit and survives power loss, at about 5x the cost of a write.
    """

    name = "sqlite"
    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})
    poll_interval = 1.0

    def __init__(
        self,
        path: str | os.PathLike[str] = "durable.db",
        *,
        synchronous: str = "normal",
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = os.fspath(path)
        if synchronous.lower() not in SYNCHRONOUS_MODES:
            raise ConfigurationError(
                f"SQLiteStore({self.path!r}): synchronous={synchronous!r} is not one of {SYNCHRONOUS_MODES}"
            )
        self.synchronous = synchronous.lower()
        self.busy_timeout = float(busy_timeout)
        self._label = repr(self)
        """Names this store in errors and corrupt records (``durable._decode``)."""
        self._db: Connection | None = None
        self._watcher: asyncio.Future[None] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``?synchronous=full&busy_timeout=5``."""
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
        if query:
            raise ConfigurationError(f"store URL {url!r}: unknown options {sorted(query)}")
        return cls(path, **{**kwargs, **options})

    # -- lifecycle ---------------------------------------------------------------

    async def open(self, *, create: bool = True) -> None:
        if self._db is not None:
            return
        if not create and not await asyncio.to_thread(os.path.exists, self.path):
            raise StoreNotFound(f"store file {self.path!r} does not exist")
        db = Connection(self.path, wait_for_lock=self.busy_timeout, inline_commits=self.synchronous != "full")
        await db.open(self._prepare)
        self._db = db

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
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                if db.in_transaction:
                    db.execute("ROLLBACK")
                time.sleep(0.005)
        db.execute("PRAGMA busy_timeout = 0")  # see _connection: never wait for a lock on the loop

    async def close(self) -> None:
        db, self._db = self._db, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
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
            cursor = db.execute(
                f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (run_id) DO NOTHING",
                (
                    run.run_id, run.workflow, run.status.value, run.inputs, run.inputs_digest, run.created_at,
                    run.updated_at, run.result, run.error, run.owner, run.lease_token, run.lease_expires_at,
                    run.wake_at, run.deadline, run.parent_run_id, int(run.cancel_requested), run.activity,
                ),
            )  # fmt: skip
            if cursor.rowcount == 1:
                return run, True
            row = db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()
            return run_from_row(self._label, row), False

        result: tuple[RunRecord, bool] = await self._write(op)
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
        # Only failed and cancelled runs are reset; any other is returned as it is.
        return run if run is not None else await self.get_run(run_id)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        if query.statuses is not None:
            if not query.statuses:
                return []
            where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
            params.extend(sorted(status.value for status in query.statuses))
        if query.workflow is not None:
            where.append("workflow = ?")
            params.append(query.workflow)
        if query.id_prefix is not None:
            # substr() rather than LIKE: the prefix may contain % and _ and must match literally.
            where.append("substr(run_id, 1, ?) = ?")
            params.extend([len(query.id_prefix), query.id_prefix])
        for column, op, value in (
            ("created_at", ">=", query.created_after),
            ("created_at", "<", query.created_before),
            ("updated_at", "<", query.updated_before),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, run_id LIMIT ? OFFSET ?"
        )
        params.extend([query.limit, query.offset])
        rows = await self._read(lambda db: db.execute(sql, params).fetchall())
        label = self._label
        return [run_from_row(label, row) for row in rows]

    async def due_runs(
        self, now: float, limit: int = 100, *, workflows: Collection[str] | None = None
    ) -> list[RunRecord]:
        """Runs due at ``now`` (``durable._lifecycle.is_due``), of ``workflows`` if given, oldest
        first: one query on the ``runs_due`` index, whose cost does not grow with the finished runs
        the file holds."""
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
            return db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount == 1

        deleted: bool = await self._write(op)
        return deleted

    # -- steps -------------------------------------------------------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._read(lambda db: db.execute(LOAD_STEPS, (run_id,)).fetchall())
        return _journal(self._label, run_id, rows)

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        def op(db: sqlite3.Connection) -> StepRecord:
            # One statement: the fencing check and the first-completed-writer-wins insert.
            cursor = db.execute(
                SAVE_STEP,
                (
                    lease.run_id, step.key, step.task, step.args_digest, step.status.value, step.result,
                    step.error, step.attempts, step.started_at, step.finished_at, lease.run_id, lease.token,
                ),
            )  # fmt: skip
            if cursor.rowcount == 1:
                return step
            token = db.execute("SELECT lease_token FROM runs WHERE run_id = ?", (lease.run_id,)).fetchone()
            if token is None or token[0] != lease.token:
                raise _stale(lease, db)
            row = db.execute(
                f"SELECT {', '.join(_STEP_FIELDS)} FROM steps WHERE run_id = ? AND key = ?",
                (lease.run_id, step.key),
            ).fetchone()
            return _journal(self._label, lease.run_id, [row])[0]

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
        return recorded

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        params: tuple[str, ...]
        if name is None:
            sql, params = f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE run_id = ? ORDER BY seq", (run_id,)
        else:
            sql = f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE run_id = ? AND name = ? ORDER BY seq"
            params = (run_id, name)
        rows = await self._read(lambda db: db.execute(sql, params).fetchall())
        for row in rows:
            if not (
                type(row[1]) is str and type(row[2]) is str and type(row[3]) is str
                and type(row[4]) is int and type(row[5]) is float
            ):  # fmt: skip
                raise _bad_signal(self._label, run_id, row)
        return [SignalRecord(*row) for row in rows]

    async def wait_for_signal(
        self, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        # Deliveries from this process wake waiters directly (send_signal); deliveries from
        # other processes through the store's one watcher of PRAGMA data_version.
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch_other_processes())
        return await super().wait_for_signal(run_id, name, index, timeout)

    async def _watch_other_processes(self) -> None:
        """While anyone waits, wake every waiter when another connection commits.

        ``PRAGMA data_version`` changes exactly when another connection committed; reading
        it costs a few microseconds, so one watcher per store polls it often, however many
        runs wait.
        """
        seen: int | None = None
        while self.has_local_waiters() and self._db is not None:
            try:
                version = await self._read(lambda db: db.execute("PRAGMA data_version").fetchone()[0])
            except StoreUnavailable:
                return
            if seen is not None and version != seen:
                self.wake_local_waiters()
            seen = version
            await asyncio.sleep(WATCH_INTERVAL)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"
