"""The tables in the store's own schema, their version, and migrating them safely."""

from __future__ import annotations

from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

from durable.errors import StoreCorrupted
from durable_postgres._output_sql import MIGRATION as OUTPUTS_MIGRATION
from durable_postgres._queue_sql import migration as queue_migration

SCHEMA_VERSION = 5
MIGRATION_TIMEOUT = 3600.0
"""Seconds one migration statement may take (building an index over a long history)."""

LIVE = (
    "{r}.status IN ('pending', 'running', 'waiting') "
    "AND ({r}.status <> 'waiting' OR {r}.owner IS NOT NULL OR {r}.wake_at IS NOT NULL)"
)
"""Which runs ``runs_live`` lists (schema 3), for the row ``{r}``: those in
``durable._lifecycle.DUE_STATUSES`` that may be due now or later, which leaves out runs parked on
a signal (waiting, no owner, no wake time: a delivery sets their wake time, and so lists them).
A test checks it against ``is_due``; a change needs a new migration."""
ASLEEP = "(CASE WHEN {r}.status = 'waiting' AND {r}.owner IS NULL THEN {r}.wake_at END)"
"""``runs_live.wake_at`` of a listed run ``{r}``: its wake time if it is parked (a durable sleep, or
a signal delivered, which sets it), else NULL: a run that may be due at any time (pending,
interrupted, or executing, due when its lease expires)."""


def _live(row: str) -> str:
    return LIVE.replace("{r}", row)


def _asleep(row: str) -> str:
    return ASLEEP.replace("{r}", row)


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
        "CREATE INDEX runs_due ON {s}.runs (created_at, run_id) "
        "WHERE status IN ('pending', 'running', 'waiting')",
    ],
    # runs_live replaces runs_due. A poll read runs_due from its oldest entry, and every run that
    # finished left a dead entry there until VACUUM removed it (its running version was indexed;
    # the update to completed cannot be HOT, status is in the index's predicate), so with
    # autovacuum off or behind a poll stepped over every finished run: 1.9-2.7x slower at 100,000
    # (benchmarks/flat_history.py). No index on runs avoids that: any entry a finished run leaves
    # is dead until vacuumed, new entries never land on the old pages (where an insert would clean
    # them up), and vacuuming runs costs as much as its whole history and every index. So the runs
    # a poll may take are listed in a table of their own, kept by triggers in the transaction of
    # every change to runs (the store's statements, batches and hand edits alike). Its size is
    # that of the live runs, so vacuuming it is cheap: autovacuum does it often with these
    # thresholds, and the store asks for it itself after taking a few thousand runs out
    # (PostgresStore._tidy), for servers where autovacuum is off or behind.
    #   A poll reads two ranges of it: runs that may be due at any time (wake_at NULL) in
    # creation order, and parked runs whose wake time has come, by wake time (see _sql.due).
    # Runs parked in a durable sleep wait in the second index, out of the first's range, and runs
    # parked on a signal are not listed at all: thousands of either cost a poll nothing. A
    # delete finds a row's entry by the old row's key. runs_by_status serves listings by status.
    3: [
        """
        CREATE TABLE {s}.runs_live (
            created_at DOUBLE PRECISION NOT NULL,
            run_id TEXT COLLATE "C" NOT NULL,
            workflow TEXT COLLATE "C" NOT NULL,
            wake_at DOUBLE PRECISION
        ) WITH (autovacuum_vacuum_threshold = 500, autovacuum_vacuum_scale_factor = 0,
                autovacuum_vacuum_insert_threshold = 500, autovacuum_vacuum_insert_scale_factor = 0)
        """,
        "CREATE UNIQUE INDEX runs_live_ready ON {s}.runs_live (created_at, run_id) WHERE wake_at IS NULL",
        "CREATE UNIQUE INDEX runs_live_asleep ON {s}.runs_live (wake_at, created_at, run_id) "
        "WHERE wake_at IS NOT NULL",
        # Creations: one statement per INSERT, whatever it inserts (a batch of 500 runs costs one
        # statement here, not 500 calls: a fifth of the time per run, measured).
        f"""
        CREATE FUNCTION {{s}}.runs_live_created() RETURNS trigger LANGUAGE plpgsql AS $created$
        BEGIN
            INSERT INTO {{s}}.runs_live (created_at, run_id, workflow, wake_at)
            SELECT n.created_at, n.run_id, n.workflow, {_asleep("n")} FROM created AS n WHERE {_live("n")}
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END
        $created$
        """,
        "CREATE TRIGGER runs_live_created AFTER INSERT ON {s}.runs REFERENCING NEW TABLE AS created "
        "FOR EACH STATEMENT EXECUTE FUNCTION {s}.runs_live_created()",
        # Changes: row by row, and only for the rows that leave, join or move (the WHEN clauses
        # are evaluated without calling a function): a renewal, the claim of a pending run and
        # an owner's status writes fire nothing; a finish deletes one entry.
        f"""
        CREATE FUNCTION {{s}}.runs_live_left() RETURNS trigger LANGUAGE plpgsql AS $left$
        BEGIN
            IF {_asleep("OLD")} IS NULL THEN
                DELETE FROM {{s}}.runs_live
                WHERE created_at = OLD.created_at AND run_id = OLD.run_id AND wake_at IS NULL;
            ELSE
                DELETE FROM {{s}}.runs_live
                WHERE wake_at = {_asleep("OLD")} AND created_at = OLD.created_at AND run_id = OLD.run_id;
            END IF;
            RETURN NULL;
        END
        $left$
        """,
        f"""
        CREATE FUNCTION {{s}}.runs_live_joined() RETURNS trigger LANGUAGE plpgsql AS $joined$
        BEGIN
            INSERT INTO {{s}}.runs_live (created_at, run_id, workflow, wake_at)
            VALUES (NEW.created_at, NEW.run_id, NEW.workflow, {_asleep("NEW")}) ON CONFLICT DO NOTHING;
            RETURN NULL;
        END
        $joined$
        """,
        f"CREATE TRIGGER runs_live_left AFTER UPDATE ON {{s}}.runs FOR EACH ROW "
        f"WHEN (({_live('OLD')}) AND NOT ({_live('NEW')})) EXECUTE FUNCTION {{s}}.runs_live_left()",
        f"CREATE TRIGGER runs_live_joined AFTER UPDATE ON {{s}}.runs FOR EACH ROW "
        f"WHEN (NOT ({_live('OLD')}) AND ({_live('NEW')})) EXECUTE FUNCTION {{s}}.runs_live_joined()",
        # A listed run whose entry changes (parked asleep, claimed after waking, edited by hand):
        # out, then in (triggers on one event fire in the order of their names).
        *(
            f"CREATE TRIGGER runs_live_moved_{order} AFTER UPDATE ON {{s}}.runs FOR EACH ROW "
            f"WHEN (({_live('OLD')}) AND ({_live('NEW')}) "
            f"AND (OLD.created_at, OLD.run_id, OLD.workflow, {_asleep('OLD')}) "
            f"IS DISTINCT FROM (NEW.created_at, NEW.run_id, NEW.workflow, {_asleep('NEW')})) "
            f"EXECUTE FUNCTION {{s}}.runs_live_{function}()"
            for order, function in (("1_out", "left"), ("2_in", "joined"))
        ),
        f"CREATE TRIGGER runs_live_deleted AFTER DELETE ON {{s}}.runs FOR EACH ROW "
        f"WHEN ({_live('OLD')}) EXECUTE FUNCTION {{s}}.runs_live_left()",
        f"INSERT INTO {{s}}.runs_live (created_at, run_id, workflow, wake_at) "
        f"SELECT created_at, run_id, workflow, {_asleep('r')} FROM {{s}}.runs AS r WHERE {_live('r')}",
        "DROP INDEX {s}.runs_due",
        "CREATE INDEX runs_by_status ON {s}.runs (status, created_at DESC, run_id)",
    ],
    # Named queues (issue 17, docs/QUEUES.md): each queued run's entry, the open entries claims
    # read, the triggers that keep them and announce freed slots, and the server-side enqueue and
    # claim (_queue_sql). runs_live leaves queued runs out from now on.
    4: queue_migration(_live, _asleep),
    # RunRecord.version and .context, StepRecord.version (nullable columns: no table rewrite);
    # listings by version read runs_by_version, which holds only the runs that have one. Then
    # the tables of events and streams (_output_sql).
    5: [
        "ALTER TABLE {s}.runs ADD COLUMN version TEXT, ADD COLUMN context TEXT",
        "ALTER TABLE {s}.steps ADD COLUMN version TEXT",
        "CREATE INDEX runs_by_version ON {s}.runs (version, created_at DESC, run_id) "
        "WHERE version IS NOT NULL",
        *OUTPUTS_MIGRATION,
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
                await conn.execute(statement.format(s=quoted), timeout=MIGRATION_TIMEOUT)
            await conn.execute(f"INSERT INTO {quoted}.schema_version (version) VALUES ($1)", target)
