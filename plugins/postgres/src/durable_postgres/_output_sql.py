"""Events and streams in SQL (``Capability.STREAMS``, docs/STREAMS.md): their tables, the triggers
that announce a run's end to its readers, and the store's statements over them.

Each write is one statement: the fencing check locks the run row (``FOR SHARE``, as a checkpoint
does, so a claim waits for it and one that committed first fails the re-checked token), the write
itself, and a ``NOTIFY`` that the server delivers only at commit, so a reader it wakes always
finds the row. An append takes its offset from its stream's row (``streams.next_offset``), which
``INSERT ... ON CONFLICT DO UPDATE`` locks to commit: appenders of one stream take turns, those of
other streams do not wait, and an append that rolls back gives its offset back (no gap).
"""

from __future__ import annotations

import hashlib

from durable.store import RunStatus

FINAL = frozenset(status for status in RunStatus if status.is_final)
LIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING})
"""The stored statuses a run that is not over may hold (readers wait only on those)."""


def _in(column: str, statuses: frozenset[RunStatus]) -> str:
    return f"{column} IN ({', '.join(repr(status.value) for status in sorted(statuses))})"


def output_key(run_id: str) -> str:
    """The NOTIFY payload saying the outputs of ``run_id`` may have changed: short (payloads are
    limited to 8000 bytes, ids are not), never a signal's ``wake_key`` (those are 32 hex digits,
    no prefix). ``key_sql`` computes the same in SQL (a test checks they agree)."""
    return "o" + hashlib.sha256(run_id.encode()).hexdigest()[:32]


def key_sql(run_id: str) -> str:
    """``output_key`` of the SQL text expression ``run_id`` (UTF-8, as Python encodes it)."""
    return f"('o' || left(encode(sha256(convert_to({run_id}, 'UTF8')), 'hex'), 32))"


def channel_sql(schema: str) -> str:
    """``_listener.channel_name`` of the SQL text expression ``schema`` (a trigger knows its schema,
    not the store's channel; a test checks they agree, long names included)."""
    name = f"('durable_signals_' || {schema})"
    hashed = f"('durable_signals_' || left(encode(sha256(convert_to({schema}, 'UTF8')), 'hex'), 40))"
    return f"(CASE WHEN octet_length({name}) <= 63 THEN {name} ELSE {hashed} END)"


# Schema 5 (with the new run and step fields: _schema). Every row belongs to a run and goes with
# it: delete_run, prune and hand deletes alike (foreign keys, ON DELETE CASCADE; a cascade reads
# the tables by their primary keys, which start with the run id). An item's write id is unique
# in its stream; appends without one get a random one (see PostgresOutputs.append).
MIGRATION: list[str] = [
    """
    CREATE TABLE {s}.events (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES {s}.runs (run_id) ON DELETE CASCADE,
        key TEXT COLLATE "C" NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (run_id, key)
    )
    """,
    """
    CREATE TABLE {s}.streams (
        run_id TEXT COLLATE "C" NOT NULL REFERENCES {s}.runs (run_id) ON DELETE CASCADE,
        key TEXT COLLATE "C" NOT NULL,
        next_offset BIGINT NOT NULL DEFAULT 0,
        closed BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (run_id, key)
    )
    """,
    """
    CREATE TABLE {s}.stream_items (
        run_id TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        "offset" BIGINT NOT NULL,
        value TEXT NOT NULL,
        write_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (run_id, key, "offset"),
        FOREIGN KEY (run_id, key) REFERENCES {s}.streams (run_id, key) ON DELETE CASCADE
    )
    """,
    "CREATE UNIQUE INDEX stream_write_ids ON {s}.stream_items (run_id, key, write_id)",
    # A run that ends (in any statement: an owner's update, a batch, a cancel, a hand edit) or is
    # deleted while live wakes the readers of its outputs in every process: they end. Only runs
    # that have outputs notify on their end, so runs that never use them take no part in
    # NOTIFY's commit-time lock (one per database): a reader waiting for the first event or item
    # of a run that ends without any is woken by its safety-net re-read instead (5 s).
    f"""
    CREATE FUNCTION {{s}}.runs_outputs_ended() RETURNS trigger LANGUAGE plpgsql AS $ended$
    BEGIN
        IF TG_OP = 'DELETE' OR EXISTS (SELECT 1 FROM {{s}}.streams WHERE run_id = OLD.run_id)
                OR EXISTS (SELECT 1 FROM {{s}}.events WHERE run_id = OLD.run_id) THEN
            PERFORM pg_notify({channel_sql("TG_TABLE_SCHEMA")}, {key_sql("OLD.run_id")});
        END IF;
        RETURN NULL;
    END
    $ended$
    """,
    f"CREATE TRIGGER runs_outputs_ended AFTER UPDATE ON {{s}}.runs FOR EACH ROW "
    f"WHEN ({_in('OLD.status', LIVE)} AND {_in('NEW.status', FINAL)}) "
    "EXECUTE FUNCTION {s}.runs_outputs_ended()",
    f"CREATE TRIGGER runs_outputs_deleted AFTER DELETE ON {{s}}.runs FOR EACH ROW "
    f"WHEN ({_in('OLD.status', LIVE)}) EXECUTE FUNCTION {{s}}.runs_outputs_ended()",
]


def statements(s: str) -> dict[str, str]:
    """The outputs' statements, with the quoted schema ``s`` filled in.

    Writes take ``$1`` run id, ``$2`` lease token, ``$3`` the NOTIFY channel and ``$4`` payload,
    ``$5`` key; each returns ``token`` (the run's current lease token, NULL if there is no run)
    and what it wrote.
    """
    # The run row, locked to commit; a write happens only if its token is the caller's.
    fenced = f"run AS (SELECT lease_token FROM {s}.runs WHERE run_id = $1 FOR SHARE)"
    mine = "run.lease_token = $2::int8"
    known = '(SELECT "offset" FROM known) AS known'

    def notify(after: str) -> str:
        return f"notified AS (SELECT pg_notify($3, $4) FROM {after})"

    def answer(written: str, *extra: str) -> str:
        # A CTE that is only SELECTed runs only if referenced: count it, in an expression worth 0.
        return (
            f"SELECT (SELECT lease_token FROM run) AS token, (SELECT count(*) FROM {written}) "
            f"+ 0 * (SELECT count(*) FROM notified) AS written{''.join(', ' + e for e in extra)}"
        )

    return {
        "set_event": (
            f"WITH {fenced}, written AS (INSERT INTO {s}.events (run_id, key, value) "
            f"SELECT $1, $5, $6 FROM run WHERE {mine} "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = EXCLUDED.value RETURNING 1), "
            f"{notify('written')} {answer('written')}"
        ),
        "get_events": f"SELECT key, value FROM {s}.events WHERE run_id = $1",
        # $6 value, $7 write id. `known` reads the statement's snapshot: an append with the same
        # write id that commits after it and before this one takes the stream's row makes this
        # insert violate stream_write_ids (rolled back, offset and all), and the caller retries.
        "append": (
            f"WITH {fenced}, "
            f'known AS (SELECT "offset" FROM {s}.stream_items WHERE run_id = $1 AND key = $5 '
            "AND write_id = $7), "
            f"bumped AS (INSERT INTO {s}.streams (run_id, key, next_offset) SELECT $1, $5, 1 FROM run "
            f"WHERE {mine} AND NOT EXISTS (SELECT 1 FROM known) "
            f"ON CONFLICT (run_id, key) DO UPDATE SET next_offset = {s}.streams.next_offset + 1 "
            f"WHERE NOT {s}.streams.closed RETURNING next_offset - 1 AS at), "
            f'item AS (INSERT INTO {s}.stream_items (run_id, key, "offset", value, write_id) '
            "SELECT $1, $5, at, $6, $7 FROM bumped RETURNING 1), "
            f"{notify('item')} {answer('item', known, '(SELECT at FROM bumped) AS at')}"
        ),
        "close": (
            f"WITH {fenced}, written AS (INSERT INTO {s}.streams (run_id, key, closed) "
            f"SELECT $1, $5, TRUE FROM run WHERE {mine} "
            "ON CONFLICT (run_id, key) DO UPDATE SET closed = TRUE RETURNING 1), "
            f"{notify('written')} {answer('written')}"
        ),
        # A stream's next offset is its length: offsets have no gaps.
        "list_streams": f"SELECT key, next_offset, closed FROM {s}.streams WHERE run_id = $1",
        # One statement, one snapshot: a reader that sees the stream closed sees every item.
        "read": (
            f'SELECT coalesce(st.closed, FALSE) AS closed, i."offset", i.value FROM (SELECT 1) AS one '
            f"LEFT JOIN {s}.streams AS st ON st.run_id = $1 AND st.key = $2 "
            f'LEFT JOIN LATERAL (SELECT "offset", value FROM {s}.stream_items '
            f'WHERE run_id = $1 AND key = $2 AND "offset" >= $3 ORDER BY "offset" '
            'LIMIT greatest($4::int8, 0)) AS i ON TRUE ORDER BY i."offset"'
        ),
    }
