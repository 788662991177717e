"""The SQLite schema, its version, and the check that a file is ours before we touch it."""

from __future__ import annotations

import sqlite3

from durable.errors import StoreCorrupted
from durable_sqlite._connection import SQLITE_READONLY, TRANSIENT, is_busy, primary_code

SCHEMA_VERSION = 5
APPLICATION = "durable"

DUE_INDEX_PREDICATE = "status IN ('pending', 'running', 'waiting')"
"""The WHERE clause of schema 2's ``runs_due`` partial index (dropped by schema 3)."""
ACTIVE_PREDICATE = "(status IN ('pending', 'running') OR (status = 'waiting' AND owner IS NOT NULL))"
"""The WHERE clause of the ``runs_active`` partial index (schema 3): runs in ``DUE_STATUSES`` but
those parked (waiting with no owner), which ``PARKED_PREDICATE`` holds."""
PARKED_PREDICATE = "status = 'waiting' AND owner IS NULL"
"""The WHERE clause of the ``runs_parked`` partial index (schema 3), by wake time."""
QUEUE_OPEN_PREDICATE = "run_status IN ('pending', 'running', 'waiting')"
"""The WHERE clause of the ``queue_claims`` and ``queue_delays`` partial indexes (schema 4): queue
entries whose run is in ``DUE_STATUSES`` (the trigger ``queue_entry_status`` mirrors the run's
status), so a claim never reads a finished run's entry."""
DEBOUNCE_PREDICATE = "debounce_key IS NOT NULL AND started_at IS NULL"
"""The WHERE clause of the ``queue_debounce`` partial index (schema 4): the entries starts may join."""
LEASED_PREDICATE = "owner IS NOT NULL"
"""The WHERE clause of the ``runs_leased`` partial index (schema 4): a queue's live leases are
counted from the range ``lease_expires_at > now`` of it, the runs workers hold now."""
VERSIONED_PREDICATE = "version IS NOT NULL"
"""The WHERE clause of the ``runs_listed_by_version`` partial index (schema 5): runs created by
code that named its version (a filter ``version = ?`` implies it, so SQLite may use the index)."""

# Migrations from version N-1 to N, applied in order inside one write transaction.
MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE durable_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        status TEXT NOT NULL,
        inputs TEXT NOT NULL,
        inputs_digest TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        result TEXT,
        error TEXT,
        owner TEXT,
        lease_token INTEGER NOT NULL DEFAULT 0,
        lease_expires_at REAL,
        wake_at REAL,
        deadline REAL,
        parent_run_id TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_created ON runs (created_at DESC, run_id);
    CREATE INDEX runs_by_status ON runs (status, wake_at);
    CREATE TABLE steps (
        run_id TEXT NOT NULL,
        key TEXT NOT NULL,
        task TEXT NOT NULL,
        args_digest TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        attempts INTEGER NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE TABLE signals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        sent_at REAL NOT NULL,
        UNIQUE (run_id, name, delivery_id)
    );
    CREATE INDEX signals_by_run ON signals (run_id, name, seq);
    """,
    # RunRecord.activity, and the due-run index: only runs in DUE_STATUSES, oldest first, so a
    # worker's poll never reads finished runs. The status list is the query's text exactly (SQLite
    # uses a partial index only for a query repeating its WHERE term); a test checks it is
    # durable._lifecycle.DUE_STATUSES, which a new migration must follow if it ever changes.
    2: f"""
    ALTER TABLE runs ADD COLUMN activity TEXT;
    CREATE INDEX runs_due ON runs (created_at, run_id) WHERE {DUE_INDEX_PREDICATE};
    """,
    # Costs that stay flat as history grows (issue 16, item 13). A poll reads the runs that may be
    # due and no parked one: runs_active (in creation order) and runs_parked (by wake time: a poll
    # reads only those whose time came), instead of runs_due, which held every parked run. A
    # listing by status or by workflow seeks an index in listing order (runs_by_status (status,
    # wake_at) served no query). An index by workflow and status too would cost every status
    # change a third of its time again (measured): a listing by both reads the status's index.
    # A child lookup is a range of the primary key (children's ids start with their parent's),
    # so it needs no index of its own.
    3: f"""
    DROP INDEX runs_due;
    DROP INDEX runs_by_status;
    CREATE INDEX runs_active ON runs (created_at, run_id) WHERE {ACTIVE_PREDICATE};
    CREATE INDEX runs_parked ON runs (wake_at) WHERE {PARKED_PREDICATE};
    CREATE INDEX runs_listed_by_status ON runs (status, created_at DESC, run_id);
    CREATE INDEX runs_listed_by_workflow ON runs (workflow, created_at DESC, run_id);
    """,
    # Named queues (issue 17, docs/QUEUES.md): one entry per queued run, beside its row (no column
    # is added to runs). run_status mirrors the run's status (the trigger), so the claim index
    # holds only entries of runs that may be due: a claim's cost does not grow with the queue's
    # finished history. Live leases are counted from runs_leased, the runs some owner holds.
    4: f"""
    CREATE TABLE queue_entries (
        run_id TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL,
        partition_key TEXT,
        not_before REAL NOT NULL,
        enqueued_at REAL NOT NULL,
        debounce_key TEXT,
        started_at REAL,
        run_status TEXT NOT NULL
    );
    CREATE INDEX queue_claims ON queue_entries (queue, priority, enqueued_at, run_id)
        WHERE {QUEUE_OPEN_PREDICATE};
    CREATE INDEX queue_delays ON queue_entries (queue, not_before) WHERE {QUEUE_OPEN_PREDICATE};
    CREATE INDEX queue_starts ON queue_entries (queue, started_at) WHERE started_at IS NOT NULL;
    CREATE INDEX queue_debounce ON queue_entries (queue, debounce_key) WHERE {DEBOUNCE_PREDICATE};
    CREATE INDEX queue_listed ON queue_entries (run_status, queue);
    CREATE INDEX runs_leased ON runs (lease_expires_at) WHERE {LEASED_PREDICATE};
    CREATE TRIGGER queue_entry_status AFTER UPDATE OF status ON runs
        WHEN old.status IS NOT new.status
        BEGIN UPDATE queue_entries SET run_status = new.status WHERE run_id = new.run_id; END;
    """,
    # The code version that created a run and the trace context it was created in (issues 19, 20),
    # and the version that wrote each checkpoint: NULL in older rows, which read as None. A listing
    # by version seeks runs_listed_by_version in listing order; the version never changes after
    # creation, so the index costs an insert and a delete per run, nothing per status change.
    # Events and streams (issue 18, docs/STREAMS.md), per run beside its row: the latest value of
    # each event; stream items numbered from 0 per (run, key), with the write id that made an
    # append idempotent (stream_write_ids, only items that have one); the closed streams; and
    # output_changes, a counter per run bumped by every such write in its transaction, which the
    # change watcher of another process compares to know whose readers to wake.
    5: f"""
    ALTER TABLE runs ADD COLUMN version TEXT;
    ALTER TABLE runs ADD COLUMN context TEXT;
    ALTER TABLE steps ADD COLUMN version TEXT;
    CREATE INDEX runs_listed_by_version ON runs (version, created_at DESC, run_id)
        WHERE {VERSIONED_PREDICATE};
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE TABLE stream_items (
        run_id TEXT NOT NULL,
        key TEXT NOT NULL,
        position INTEGER NOT NULL,
        value TEXT NOT NULL,
        write_id TEXT,
        PRIMARY KEY (run_id, key, position)
    );
    CREATE UNIQUE INDEX stream_write_ids ON stream_items (run_id, key, write_id) WHERE write_id IS NOT NULL;
    CREATE TABLE streams_closed (run_id TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (run_id, key));
    CREATE TABLE output_changes (run_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
    """,
}


def statements(script: str) -> list[str]:
    """``script``'s statements, one by one: split at each ``;`` that ends a complete statement (a
    trigger's body holds ``;`` of its own). ``executescript`` would commit the open transaction."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending.strip())
            pending = ""
    if pending.strip(" \n;"):
        found.append(pending.strip().removesuffix(";"))
    return found


def read_version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version (0 for an empty database), without writing anything.

    Raises ``StoreCorrupted`` for a file that is not SQLite, is damaged, belongs to
    another application, or holds a schema version no durable release wrote or a newer one.
    Errors of the machine rather than the file (a lock, a file that cannot be opened or
    written, a full disk) are raised as they are.
    """
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return 0
        if "durable_meta" not in tables:
            raise corrupted(
                path,
                f"{path!r} is an SQLite database of another application (tables: "
                f"{', '.join(sorted(tables)[:5])}); durable left it unchanged. Use another file.",
            )
        meta = dict(conn.execute("SELECT key, value FROM durable_meta").fetchall())
    except sqlite3.OperationalError as exc:
        if not_the_files_fault(exc):
            raise
        raise corrupted(
            path, f"{path!r} is not a durable store or is damaged ({exc}); durable left it unchanged"
        ) from exc
    except sqlite3.DatabaseError as exc:
        raise corrupted(
            path, f"{path!r} is not a durable store or is damaged ({exc}); durable left it unchanged"
        ) from exc
    if meta.get("application") != APPLICATION:
        raise corrupted(path, f"{path!r} has a durable_meta table that durable did not write; left unchanged")
    text = meta.get("schema_version")
    version = int(text) if isinstance(text, str) and text.isascii() and text.isdigit() else None
    if version is not None and version > SCHEMA_VERSION:
        raise corrupted(
            path,
            f"{path!r} was written by a newer durable (schema {version}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade durable-sqlite. The file was left unchanged.",
        )
    if version is None or version < 1:
        raise corrupted(
            path,
            f"{path!r} holds schema version {text!r}, which no durable release writes (this one reads "
            f"versions 1 to {SCHEMA_VERSION}): damaged or edited by hand; durable left it unchanged",
        )
    return version


def not_the_files_fault(exc: sqlite3.OperationalError) -> bool:
    """A lock held by another process, a file that cannot be opened or written, a full disk, an
    I/O error: nothing says the file is not a durable store."""
    return primary_code(exc) in TRANSIENT | {SQLITE_READONLY} or is_busy(exc)


def corrupted(path: str, message: str) -> StoreCorrupted:
    error = StoreCorrupted(message)
    error.store = path
    return error


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the schema up to date; concurrent openers serialise on the write lock."""
    if read_version(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(conn, path)  # again, under the lock: another process may have migrated
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in statements(MIGRATIONS[target]):
                conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO durable_meta (key, value) "
            "VALUES ('application', ?), ('schema_version', ?)",
            (APPLICATION, str(SCHEMA_VERSION)),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
