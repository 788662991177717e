"""The SQLite schema, its version, and the check that a file is ours before we touch it."""

from __future__ import annotations

import sqlite3

from durable.errors import StoreCorrupted

SCHEMA_VERSION = 2
APPLICATION = "durable"

DUE_INDEX_PREDICATE = "status IN ('pending', 'running', 'waiting')"
"""The WHERE clause of the ``runs_due`` partial index (schema 2)."""

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
}


def read_version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version (0 for an empty database), without writing anything.

    Raises ``StoreCorrupted`` for a file that is not SQLite, is damaged, belongs to
    another application, or was written by a newer durable.
    """
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return 0
        if "durable_meta" not in tables:
            raise StoreCorrupted(
                f"{path!r} is an SQLite database of another application (tables: "
                f"{', '.join(sorted(tables)[:5])}); durable left it unchanged. Use another file."
            )
        meta = dict(conn.execute("SELECT key, value FROM durable_meta").fetchall())
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise  # another process is busy with the file: not a sign of damage
        raise StoreCorrupted(
            f"{path!r} is not a durable store or is damaged ({exc}); durable left it unchanged"
        ) from exc
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupted(
            f"{path!r} is not a durable store or is damaged ({exc}); durable left it unchanged"
        ) from exc
    if meta.get("application") != APPLICATION or not meta.get("schema_version", "").isdigit():
        raise StoreCorrupted(f"{path!r} has a durable_meta table that durable did not write; left unchanged")
    version = int(meta["schema_version"])
    if version > SCHEMA_VERSION:
        raise StoreCorrupted(
            f"{path!r} was written by a newer durable (schema {version}, this one reads up to "
            f"{SCHEMA_VERSION}); upgrade durable-sqlite. The file was left unchanged."
        )
    return version


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the schema up to date; concurrent openers serialise on the write lock."""
    if read_version(conn, path) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(conn, path)  # again, under the lock: another process may have migrated
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
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
