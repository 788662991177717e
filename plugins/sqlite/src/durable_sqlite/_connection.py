"""One SQLite connection shared by a store: group commit, and no waiting on the event loop.

Why not a thread hop per operation: handing a call to aiosqlite's thread and back
costs about 57 µs on a 2-vCPU machine, three times an uncontended WAL commit
(about 19 µs). So a short transaction runs directly on the event loop *when the
database lock is free*: the connection's busy timeout is 0, so SQLite answers
"busy" at once instead of blocking the loop. A busy lock (another process is
writing) and opening the file go to aiosqlite's thread, which waits there. With
``synchronous=full`` (an fsync per commit) a lone write still commits on the loop
(the hop would cost more than it frees), a batch of several in the thread, so the
loop keeps collecting the next batch during the fsync.

Group commit: writes queued during one event-loop iteration share one
transaction; each runs in its own savepoint so one failing write (``LeaseLost``)
leaves the others intact. A writer resumes only after its transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import aiosqlite

from durable.batching import nothing_else_ready
from durable.errors import ConfigurationError, LeaseLost, StoreCorrupted, StoreUnavailable
from durable_sqlite._read_only import read_only_error, why_read_only

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]
Batch = list[tuple[Op, "asyncio.Future[Any]"]]

MAX_INLINE_STREAK = 32

# Errors that belong to one write of a batch, not to the transaction.
OP_ERRORS = (LeaseLost, sqlite3.IntegrityError, ValueError)


# SQLite's primary result codes (an extended code keeps its primary one in the low byte).
SQLITE_NOMEM, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN = 7, 10, 11, 13, 14
SQLITE_READONLY, SQLITE_PROTOCOL, SQLITE_NOTADB = 8, 15, 26
TRANSIENT = frozenset({SQLITE_NOMEM, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL})
"""Failures of the machine rather than of the file or the statement (a full disk, an I/O error,
no memory, a journal or temporary file that cannot be created): the transaction was rolled back
and the same write may succeed later."""


def is_busy(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def primary_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code for ``exc`` (``None`` where sqlite3 gives none)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def store_error(path: str, exc: sqlite3.Error, doing: str) -> Exception:
    """The durable error for an SQLite error of store ``path`` while it did ``doing`` ("write",
    "read", "open"), naming the file and the cause; ``exc`` itself if it is none of these.

    A transient failure is ``StoreUnavailable``, so that the core retries the write (never the
    task body) within its write budget (``durable.context.STORE_WRITE_BUDGET``).
    """
    primary = primary_code(exc)
    cause = f"{exc} ({getattr(exc, 'sqlite_errorname', None) or type(exc).__name__})"
    if primary in TRANSIENT:
        undone = "; nothing was written" if doing == "write" else ""
        return StoreUnavailable(f"SQLiteStore({path!r}) could not {doing}: {cause}{undone}")
    if primary == SQLITE_READONLY:
        return read_only_error(path, why_read_only(path, cause))
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return StoreCorrupted(f"SQLiteStore({path!r}) is damaged: {cause}")
    return exc


def raise_as_store_error(path: str, exc: sqlite3.Error, doing: str) -> NoReturn:
    """Raise ``store_error``'s error for ``exc`` (``exc`` itself if it has none)."""
    translated = store_error(path, exc, doing)
    if translated is exc:
        raise exc
    raise translated from exc


async def _thread_exit(aio: aiosqlite.Connection) -> None:
    """Wait (up to a second) for a stopped connection's thread to exit, without blocking the loop:
    it still reports to the loop on its way out (closing, or failing to connect)."""
    deadline = time.monotonic() + 1.0
    while aio._thread.is_alive() and time.monotonic() < deadline:  # noqa: ASYNC110 - a thread, no event
        await asyncio.sleep(0.001)


class Connection:
    """Schedules reads and writes of one store on its aiosqlite connection."""

    def __init__(
        self,
        path: str,
        *,
        wait_for_lock: float,
        inline_commits: bool,
        uri: str | None = None,
        read_only: str | None = None,
    ) -> None:
        """``inline_commits=False``: batches of several writes commit in aiosqlite's thread.
        ``uri`` opens the file by that URI instead of its path; ``read_only`` (why the file is
        read-only) refuses every write without trying it."""
        self.path = path
        self.uri = uri
        self.read_only = read_only
        self.wait_for_lock = wait_for_lock
        self.inline_commits = inline_commits
        self._aio: aiosqlite.Connection | None = None
        self._db: sqlite3.Connection | None = None
        self._pending: Batch = []
        self._flush_scheduled = False
        self._thread_busy = False
        self._thread_flush: asyncio.Future[None] | None = None
        self._inline_streak = 0

    async def open(self, prepare: Callable[[sqlite3.Connection], None]) -> None:
        # check_same_thread=False: the loop thread uses the connection while aiosqlite's thread
        # is idle; this class never lets both use it at once.
        aio = aiosqlite.connect(
            self.uri or self.path,
            uri=self.uri is not None,
            isolation_level=None,
            timeout=0,
            check_same_thread=False,
        )
        aio._thread.daemon = True  # an unclosed store must not keep the interpreter alive at exit
        try:
            await aio
        except sqlite3.OperationalError as exc:
            await _thread_exit(aio)
            raise self._cannot_open(exc) from exc
        try:
            await aio._execute(prepare, aio._conn)  # type: ignore[no-untyped-call]
        except BaseException as exc:
            await aio.close()
            if isinstance(exc, sqlite3.Error):
                raise_as_store_error(self.path, exc, "open")
            raise
        self._aio, self._db = aio, aio._conn

    def _cannot_open(self, exc: sqlite3.OperationalError) -> Exception:
        """Why the file cannot be opened, naming it: SQLite says only "unable to open database file"."""
        path = self.path
        if os.path.isdir(path):
            return ConfigurationError(f"SQLite store path {path!r} is a directory, not a database file")
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            return ConfigurationError(
                f"cannot create SQLite store {path!r}: its directory {directory!r} does not exist"
            )
        if not os.access(path if os.path.exists(path) else directory, os.R_OK | os.W_OK):
            return ConfigurationError(f"cannot open SQLite store {path!r}: permission denied")
        return StoreUnavailable(f"cannot open SQLite store {path!r}: {exc}")

    async def close(self) -> None:
        aio, self._aio, self._db = self._aio, None, None
        if aio is None:
            return
        if self._thread_flush is not None:
            await asyncio.gather(self._thread_flush, return_exceptions=True)
        await aio.close()
        # aiosqlite's close returns before its thread has exited; Store.close promises no
        # thread is left behind.
        await _thread_exit(aio)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable(f"SQLiteStore({self.path!r}) is not open (call open() or use Workflow)")
        return self._db

    # -- reads -------------------------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._read(fn)
        except sqlite3.Error as exc:
            raise_as_store_error(self.path, exc, "read")

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._require()
        if not self._thread_busy:
            try:
                return fn(db)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
        return await self._in_thread(lambda conn: self._waiting(conn, fn))

    # -- writes ------------------------------------------------------------------

    async def write(self, op: Op) -> Any:
        """Commit ``op``; raises what ``op`` raised, or ``store_error``'s error for the transaction."""
        try:
            return await self._write(op)
        except sqlite3.Error as exc:
            raise_as_store_error(self.path, exc, "write")

    async def _write(self, op: Op) -> Any:
        db = self._require()
        if self.read_only is not None:
            raise read_only_error(self.path, self.read_only)
        loop = asyncio.get_running_loop()
        if self._can_commit_now(loop):
            try:
                [(ok, value)] = commit(db, [op])
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
            else:  # not busy: committed (or refused by the op itself)
                self._inline_streak += 1
                if ok:
                    return value
                raise value
        self._inline_streak = 0
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((op, future))
        if not self._flush_scheduled and not self._thread_busy:
            self._flush_scheduled = True
            loop.call_soon(self._flush_inline)
        return await future

    def _can_commit_now(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a write may commit at once, alone, without waiting for the loop's next turn.

        Deferring to the next turn lets writes of other runs join the transaction; when no
        other callback is ready to run (a sequential workflow), nothing can join, and the
        two loop turns a deferred write costs are pure overhead. Every
        ``MAX_INLINE_STREAK``-th write is deferred anyway, so a long run of trivial steps
        still lets the loop poll sockets and timers (the lease heartbeat).
        """
        return (
            nothing_else_ready(loop)
            and not self._pending
            and not self._flush_scheduled
            and not self._thread_busy
            and self._inline_streak < MAX_INLINE_STREAK
        )

    def _flush_inline(self) -> None:
        self._flush_scheduled = False
        if self._thread_busy or not self._pending or self._db is None:
            return
        if not self.inline_commits and len(self._pending) > 1:
            self._start_thread_flush()
            return
        batch, self._pending = self._pending, []
        try:
            outcomes = commit(self._db, [op for op, _ in batch])
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                fail(batch, exc)
                return
            self._pending = batch + self._pending  # locked by another process: wait off the loop
            self._start_thread_flush()
            return
        except Exception as exc:
            fail(batch, exc)
            return
        resolve(batch, outcomes)

    def _start_thread_flush(self) -> None:
        self._thread_busy = True
        self._thread_flush = asyncio.ensure_future(self._flush_in_thread())

    async def _flush_in_thread(self) -> None:
        try:
            while self._pending and self._aio is not None:
                batch, self._pending = self._pending, []
                try:
                    ops = [op for op, _ in batch]
                    outcomes = await self._in_thread(
                        functools.partial(self._waiting, fn=functools.partial(commit, ops=ops))
                    )
                except BaseException as exc:
                    interrupted = StoreUnavailable(f"write interrupted: {exc!r}")
                    fail(batch, exc if isinstance(exc, Exception) else interrupted)
                    continue
                resolve(batch, outcomes)
        finally:
            self._thread_busy = False
        if self._pending:  # queued while the last batch committed
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_inline)

    # -- the thread path ---------------------------------------------------------

    async def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._aio is None:
            raise StoreUnavailable(f"SQLiteStore({self.path!r}) is closed")
        result: T = await self._aio._execute(fn, self._aio._conn)  # type: ignore[no-untyped-call]
        return result

    def _waiting(self, db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn``, retrying while another process holds the lock (in aiosqlite's thread)."""
        deadline = time.monotonic() + self.wait_for_lock
        delay = 0.001
        while True:
            try:
                return fn(db)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"SQLiteStore({self.path!r}) stayed locked by other processes for "
                        f"{self.wait_for_lock:.0f}s"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)


def commit(db: sqlite3.Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    """Run a batch of writes in one transaction; a failing write is rolled back alone.

    A write that raises one of ``OP_ERRORS`` must do so before it changes anything:
    a batch of one skips the savepoint.
    """
    outcomes: list[tuple[bool, Any]] = []
    alone = len(ops) == 1
    db.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            if alone:
                try:
                    outcomes.append((True, op(db)))
                except OP_ERRORS as exc:
                    outcomes.append((False, exc))
                continue
            db.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op(db)))
            except OP_ERRORS as exc:
                db.execute("ROLLBACK TO op")
                outcomes.append((False, exc))
            db.execute("RELEASE op")
        db.execute("COMMIT")
    except BaseException:
        # A full disk or an I/O error may have rolled the transaction back already, and may make
        # the rollback fail too: the error to report is the first one.
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    return outcomes


def resolve(batch: Batch, outcomes: list[tuple[bool, Any]]) -> None:
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def fail(batch: Batch, exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
