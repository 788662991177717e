"""The tables in the store's own schema, their version, and migrating them safely."""

from __future__ import annotations

from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from durable.errors import StoreCorrupted

SCHEMA_VERSION = 2

DUE_INDEX_PREDICATE = "status IN ('pending', 'running', 'waiting')"
"""The WHERE clause of the ``runs_due`` partial index (schema 2): ``durable._lifecycle.DUE_STATUSES``
as the due-run query writes them (a test checks they agree; a change needs a new migration)."""

# ``runs.claim_id`` and ``signals.sender`` are random per call: after a connection is lost
# mid-statement, a retry reads them to tell whether its first attempt committed.
# Identifier columns use the "C" collation so ORDER BY run_id matches Python's str order,
# as ``RunQuery`` defines it, whatever the database's locale is.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """
        CREATE TABLE {s}.runs (
            run_id TEXT COLLATE "C" PRIMARY KEY,
            workflow TEXT COLLATE "C" NOT NULL,
            status TEXT NOT NULL,
            inputs TEXT NOT NULL,
            inputs_digest TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            result TEXT,
            error TEXT,
            owner TEXT,
            lease_token BIGINT NOT NULL DEFAULT 0,
            lease_expires_at DOUBLE PRECISION,
            wake_at DOUBLE PRECISION,
            deadline DOUBLE PRECISION,
            parent_run_id TEXT,
            cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
            claim_id TEXT
        )
        """,
        "CREATE INDEX runs_by_created ON {s}.runs (created_at DESC, run_id)",
        "CREATE INDEX runs_by_workflow ON {s}.runs (workflow, created_at DESC, run_id)",
        "CREATE INDEX runs_active ON {s}.runs (created_at DESC, run_id) "
        "WHERE status IN ('pending', 'running', 'waiting')",
        """
        CREATE TABLE {s}.steps (
            run_id TEXT COLLATE "C" NOT NULL,
            key TEXT COLLATE "C" NOT NULL,
            task TEXT NOT NULL,
            args_digest TEXT NOT NULL,
            status TEXT NOT NULL,
            result TEXT,
            error TEXT,
            attempts INTEGER NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, key)
        )
        """,
        """
        CREATE TABLE {s}.signals (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id TEXT COLLATE "C" NOT NULL,
            name TEXT COLLATE "C" NOT NULL,
            delivery_id TEXT COLLATE "C" NOT NULL,
            payload TEXT NOT NULL,
            sent_at DOUBLE PRECISION NOT NULL,
            sender TEXT,
            UNIQUE (run_id, name, delivery_id)
        )
        """,
        "CREATE INDEX signals_by_run ON {s}.signals (run_id, name, seq)",
    ],
    # RunRecord.activity (a nullable column: no table rewrite), and the due-run index in the
    # order workers take due runs, oldest first. It replaces runs_active, the same runs newest
    # first, which only the due-run query used.
    2: [
        "ALTER TABLE {s}.runs ADD COLUMN activity TEXT",
        "DROP INDEX {s}.runs_active",
        f"CREATE INDEX runs_due ON {{s}}.runs (created_at, run_id) WHERE {DUE_INDEX_PREDICATE}",
    ],
}


async def read_version(conn: PoolConnectionProxy[Record], schema: str, quoted: str) -> int:
    """The schema's version (0 if it does not exist yet), without writing anything.

    Raises ``StoreCorrupted`` if the schema holds tables durable did not create, or was
    written by a newer durable.
    """
    row = await conn.fetchrow(
        "SELECT to_regclass($1) IS NOT NULL AS versioned, "
        "(SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        " ON n.oid = c.relnamespace WHERE n.nspname = $2 AND c.relkind IN ('r', 'p', 'v')) AS tables",
        f"{quoted}.schema_version",
        schema,
    )
    assert row is not None
    if not row["versioned"]:
        if row["tables"]:
            raise StoreCorrupted(
                f"schema {schema!r} holds {row['tables']} table(s) that durable did not create; "
                "durable left it unchanged. Choose another schema (?schema=... in the URL)."
            )
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {quoted}.schema_version")
    if version is None:
        raise StoreCorrupted(f"schema {schema!r} has an empty schema_version table; left unchanged")
    if version > SCHEMA_VERSION:
        raise StoreCorrupted(
            f"schema {schema!r} was written by a newer durable (schema version {version}, this "
            f"durable-postgres reads up to {SCHEMA_VERSION}); upgrade durable-postgres. "
            "Nothing was changed."
        )
    return int(version)


async def migrate(conn: PoolConnectionProxy[Record], schema: str, quoted: str) -> None:
    """Create or upgrade the schema; concurrent starters serialise on an advisory lock."""
    if await read_version(conn, schema, quoted) == SCHEMA_VERSION:
        return
    async with conn.transaction():
        # Transaction-scoped: released by COMMIT or ROLLBACK, even if this process dies.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('durable-migrate:' || $1))", schema)
        version = await read_version(conn, schema, quoted)  # again: another starter may have migrated
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
            await conn.execute(
                f"CREATE TABLE {quoted}.schema_version ("
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                await conn.execute(statement.format(s=quoted))
            await conn.execute(f"INSERT INTO {quoted}.schema_version (version) VALUES ($1)", target)
