"""Named queues in SQL (``Capability.QUEUES``, docs/QUEUES.md): schema 4's tables, triggers and
server-side functions, and the store's statements over them.

Two tables. ``queue_entries`` is each queued run's ``QueuedRun``, kept until the run is deleted
(a foreign key, ``ON DELETE CASCADE``): the rate windows count its ``started_at``, debounced
starts find their run through it, ``list_queues`` reads its ``listed`` flag. ``queue_open`` lists
the entries of runs that may still be claimed (pending, running, waiting), as ``runs_live`` does
for ``due_runs``: a trigger deletes a run's row when it finishes and puts it back on a reset, so
claims never read a finished run's entry and the table stays the size of the live queues (cheap
for autovacuum, with runs_live's thresholds). Its ``held`` flag says some owner holds (or held,
until a release) the run's lease: a claim counts live leases among those rows only, judging each
lease on the server's clock, so a dead owner's slot frees itself when its lease expires.

Why a per-queue advisory lock, and not row locks alone: a limit is a count of other rows (the
queue's live leases, its starts in the window). Two claimers that each lock a different candidate
with ``SKIP LOCKED`` would both count ``concurrency - 1`` running and both claim: row locks on
candidates cannot make a count exact. ``queue_claim`` therefore takes
``pg_advisory_xact_lock(QUEUE_LOCK_SPACE, hashtext(schema:queue))`` first, so claimers of one
queue take turns (other queues' claimers do not wait, and nothing else in the store takes it),
and it is released at commit, even if the client dies. It is a function, not one statement with
CTEs, because a statement's snapshot is taken before its lock is granted: its counts would miss
the claims of the claimer it waited for. Each statement of a plpgsql function takes a fresh
snapshot (READ COMMITTED), so the counts after the lock see every earlier claimer's commit. The
candidates are then locked with ``FOR UPDATE SKIP LOCKED`` and re-checked, so a run that a direct
``claim_run``, a checkpoint or a debounce replace holds is skipped rather than waited for. The
whole claim (lock, counts, walk, writes) is one call: the limit check costs no round trip. A
claim with no limits at all counts nothing, so it takes no lock: claimers of an unlimited queue
do not take turns (the row locks alone keep two of them from taking one run).

Notifications (one channel per schema, the signals' one; payloads are ``queue_key``): an enqueue
or debounce replace, and in a trigger on ``runs``, a queued run's slot freed (released, given
back, ended), woken (``wake_at`` set) or made pending again (a reset). A pending run created
without an entry notifies ``DEFAULT_QUEUE`` (once per INSERT statement, however many runs it
creates), so workers serving unqueued runs are woken by ``start()`` too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from durable.store import DEFAULT_QUEUE
from durable_postgres._output_sql import channel_sql

QUEUE_LOCK_SPACE = 0x7175  # first key of the two-int advisory locks serialising one queue's claims
DEBOUNCE_LOCK_SPACE = 0x7164  # ... and the debounced enqueues of one (queue, debounce key)
OPEN = "('pending', 'running', 'waiting')"
"""The statuses of runs a queue claim may take (``durable._lifecycle.DUE_STATUSES``)."""
CLOSED = "('cancelled', 'completed')"
"""The statuses that take a run's queue out of ``list_queues``."""
PAGE = 256
"""The most open entries a claim reads at a time, in claim order (its first page is one more than
it may claim, each next one four times larger: entries it skips are few, usually)."""
FLOODED = 256
"""Entries of full partitions a claim steps over in claim order before it takes the other
partitions' heads instead (``queue_partitions``): a flooded partition costs a claim at most this."""
ENTRY_COLUMNS = "run_id, queue, priority, partition_key, not_before, enqueued_at, debounce_key, started_at"
"""``QueuedRun``'s fields, in order."""


def queue_key(queue: str) -> str:
    """The NOTIFY payload saying a run of ``queue`` may have become claimable: short (payloads are
    limited to 8000 bytes), never a signal's ``wake_key`` (32 hex digits) nor an output key
    (``o...``). ``key_sql`` computes the same in SQL (a test checks they agree)."""
    return "q" + hashlib.sha256(queue.encode()).hexdigest()[:32]


def key_sql(queue: str) -> str:
    """``queue_key`` of the SQL text expression ``queue`` (UTF-8, as Python encodes it)."""
    return f"('q' || left(encode(sha256(convert_to({queue}, 'UTF8')), 'hex'), 32))"


def _notify(queue: str) -> str:
    return f"PERFORM pg_notify({channel_sql('TG_TABLE_SCHEMA')}, {key_sql(queue)});"


def _finite(column: str) -> str:
    # A hand-edited NaN or infinity reads as a corrupt run (durable._decode): never claimed.
    return f"coalesce({column} - {column}, 0) = 0"


def _claimable(r: str) -> str:
    """Whether run row ``r`` may be taken by a queue claim at the caller's ``p_now`` (its wake time)
    and the server's ``clock`` (leases): ``durable._lifecycle.is_due``, readable rows only."""
    return (
        f"{r}.status IN {OPEN} "
        f"AND NOT ({r}.owner IS NOT NULL AND coalesce({r}.lease_expires_at, 0) > clock) "
        f"AND ({r}.status <> 'waiting' OR {r}.owner IS NOT NULL OR {r}.wake_at <= p_now) "
        f"AND {r}.created_at - {r}.created_at = 0 AND {r}.updated_at - {r}.updated_at = 0 "
        f"AND {_finite(f'{r}.lease_expires_at')} AND {_finite(f'{r}.wake_at')}"
    )


def migration(live: Callable[[str], str], asleep: Callable[[str], str]) -> list[str]:
    """Schema 4's statements; ``live`` and ``asleep`` are ``_schema``'s ``runs_live`` conditions
    for a row (``runs_live`` learns to leave queued runs out: ``due_runs`` never returns them)."""
    return [
        """
        CREATE TABLE {s}.queue_entries (
            run_id TEXT COLLATE "C" PRIMARY KEY REFERENCES {s}.runs (run_id) ON DELETE CASCADE,
            queue TEXT COLLATE "C" NOT NULL,
            priority BIGINT NOT NULL,
            partition_key TEXT COLLATE "C",
            not_before DOUBLE PRECISION NOT NULL,
            enqueued_at DOUBLE PRECISION NOT NULL,
            debounce_key TEXT COLLATE "C",
            started_at DOUBLE PRECISION,
            listed BOOLEAN NOT NULL DEFAULT TRUE
        )
        """,
        "CREATE INDEX queue_starts ON {s}.queue_entries (queue, started_at) WHERE started_at IS NOT NULL",
        "CREATE INDEX queue_debounce ON {s}.queue_entries (queue, debounce_key) "
        "WHERE debounce_key IS NOT NULL AND started_at IS NULL",
        "CREATE INDEX queue_listed ON {s}.queue_entries (queue) WHERE listed",
        """
        CREATE TABLE {s}.queue_open (
            run_id TEXT COLLATE "C" PRIMARY KEY REFERENCES {s}.queue_entries (run_id) ON DELETE CASCADE,
            queue TEXT COLLATE "C" NOT NULL,
            priority BIGINT NOT NULL,
            enqueued_at DOUBLE PRECISION NOT NULL,
            partition_key TEXT COLLATE "C",
            not_before DOUBLE PRECISION NOT NULL,
            held BOOLEAN NOT NULL DEFAULT FALSE
        ) WITH (autovacuum_vacuum_threshold = 500, autovacuum_vacuum_scale_factor = 0,
                autovacuum_vacuum_insert_threshold = 500, autovacuum_vacuum_insert_scale_factor = 0)
        """,
        "CREATE INDEX queue_claims ON {s}.queue_open (queue, priority, enqueued_at, run_id)",
        "CREATE INDEX queue_held ON {s}.queue_open (queue, partition_key) WHERE held",
        "CREATE INDEX queue_delays ON {s}.queue_open (queue, not_before)",
        "CREATE INDEX queue_partitions ON {s}.queue_open "
        "(queue, partition_key, priority, enqueued_at, run_id)",
        "CREATE INDEX queue_unkeyed ON {s}.queue_open (queue, priority, enqueued_at, run_id) "
        "WHERE partition_key IS NULL",
        # runs_live (schema 3) leaves queued runs out from now on. An enqueue inserts the run and
        # its entry in one statement, and the statement's AFTER trigger sees both.
        f"""
        CREATE OR REPLACE FUNCTION {{s}}.runs_live_created() RETURNS trigger LANGUAGE plpgsql AS $created$
        BEGIN
            INSERT INTO {{s}}.runs_live (created_at, run_id, workflow, wake_at)
            SELECT n.created_at, n.run_id, n.workflow, {asleep("n")} FROM created AS n WHERE {live("n")}
            AND NOT EXISTS (SELECT 1 FROM {{s}}.queue_entries AS q WHERE q.run_id = n.run_id)
            ON CONFLICT DO NOTHING;
            IF EXISTS (SELECT 1 FROM created AS n WHERE n.status = 'pending'
                       AND NOT EXISTS (SELECT 1 FROM {{s}}.queue_entries AS q WHERE q.run_id = n.run_id)) THEN
                {_notify(repr(DEFAULT_QUEUE))}
            END IF;
            RETURN NULL;
        END
        $created$
        """,
        f"""
        CREATE OR REPLACE FUNCTION {{s}}.runs_live_joined() RETURNS trigger LANGUAGE plpgsql AS $joined$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM {{s}}.queue_entries WHERE run_id = NEW.run_id) THEN
                INSERT INTO {{s}}.runs_live (created_at, run_id, workflow, wake_at)
                VALUES (NEW.created_at, NEW.run_id, NEW.workflow, {asleep("NEW")}) ON CONFLICT DO NOTHING;
            END IF;
            RETURN NULL;
        END
        $joined$
        """,
        # A claim, a release, a status change, a lease given back or a wake-up of any run: for a
        # queued one, keep queue_open and the entry's flags, and wake the queue's claimers when a
        # slot was freed or the run may be claimable again. Renewals and checkpoints fire nothing.
        f"""
        CREATE FUNCTION {{s}}.queue_run_changed() RETURNS trigger LANGUAGE plpgsql AS $changed$
        DECLARE
            e RECORD;
            is_open BOOLEAN := NEW.status IN {OPEN};
            is_held BOOLEAN := NEW.owner IS NOT NULL AND NEW.status IN {OPEN};
        BEGIN
            SELECT queue, priority, enqueued_at, partition_key, not_before, listed INTO e
            FROM {{s}}.queue_entries WHERE run_id = NEW.run_id;
            IF NOT FOUND THEN
                -- An unqueued run reset, or woken by a signal: DEFAULT_QUEUE's workers may take it.
                IF (NEW.status = 'pending' AND OLD.status <> 'pending') OR (NEW.owner IS NULL
                        AND NEW.wake_at IS NOT NULL AND NEW.wake_at IS DISTINCT FROM OLD.wake_at
                        AND NEW.wake_at <= extract(epoch FROM now())::float8 + 1) THEN
                    {_notify(repr(DEFAULT_QUEUE))}
                END IF;
                RETURN NULL;
            END IF;
            IF e.listed IS DISTINCT FROM (NEW.status NOT IN {CLOSED}) THEN
                UPDATE {{s}}.queue_entries SET listed = NEW.status NOT IN {CLOSED} WHERE run_id = NEW.run_id;
            END IF;
            IF is_open THEN
                INSERT INTO {{s}}.queue_open AS o (run_id, queue, priority, enqueued_at, partition_key,
                    not_before, held)
                VALUES (NEW.run_id, e.queue, e.priority, e.enqueued_at, e.partition_key, e.not_before,
                    is_held)
                ON CONFLICT (run_id) DO UPDATE SET held = EXCLUDED.held WHERE o.held <> EXCLUDED.held;
            ELSE
                DELETE FROM {{s}}.queue_open WHERE run_id = NEW.run_id;
            END IF;
            IF (OLD.owner IS NOT NULL AND (NOT is_held OR NEW.lease_expires_at < OLD.lease_expires_at))
                    OR (NEW.wake_at IS NOT NULL AND NEW.wake_at IS DISTINCT FROM OLD.wake_at)
                    OR (NEW.status = 'pending' AND OLD.status <> 'pending') THEN
                {_notify("e.queue")}
            END IF;
            RETURN NULL;
        END
        $changed$
        """,
        "CREATE TRIGGER queue_run_changed AFTER UPDATE ON {s}.runs FOR EACH ROW WHEN ("
        "OLD.lease_token IS DISTINCT FROM NEW.lease_token OR OLD.status IS DISTINCT FROM NEW.status "
        "OR (OLD.owner IS NOT NULL AND NEW.owner IS NULL) OR NEW.lease_expires_at < OLD.lease_expires_at "
        "OR (NEW.wake_at IS NOT NULL AND NEW.wake_at IS DISTINCT FROM OLD.wake_at)) "
        "EXECUTE FUNCTION {s}.queue_run_changed()",
        # enqueue_run: the run, its entry and its queue_open row in one statement, or (debounced,
        # under the key's advisory lock, which orders concurrent starts: one creates) the new
        # inputs and times written to the key's pending, never claimed run. The run is given as
        # JSON by column name, so columns added to runs later are written without a change here.
        """
        CREATE FUNCTION {s}.queue_enqueue(p_run JSONB, p_queue TEXT, p_priority BIGINT, p_partition TEXT,
            p_not_before FLOAT8, p_enqueued_at FLOAT8, p_debounce TEXT, p_lock_key TEXT, p_channel TEXT,
            p_key TEXT, OUT outcome TEXT, OUT stored {s}.runs) LANGUAGE plpgsql AS $enqueue$
        DECLARE
            target TEXT;
        BEGIN
            IF p_debounce IS NOT NULL THEN
                PERFORM pg_advisory_xact_lock(%(debounce)d, hashtext(p_lock_key));
                SELECT e.run_id INTO target
                FROM {s}.queue_entries AS e JOIN {s}.runs AS r ON r.run_id = e.run_id
                WHERE e.queue = p_queue AND e.debounce_key = p_debounce AND e.debounce_key IS NOT NULL
                    AND e.started_at IS NULL AND r.status = 'pending' AND r.lease_token = 0
                ORDER BY e.enqueued_at, e.run_id LIMIT 1;
                IF target IS NOT NULL THEN
                    -- Locked, then checked again: a claim that took it first wins.
                    SELECT * INTO stored FROM {s}.runs WHERE run_id = target FOR UPDATE;
                    IF stored.status = 'pending' AND stored.lease_token = 0 THEN
                        IF stored.workflow <> p_run->>'workflow' THEN
                            outcome := 'exists';
                            RETURN;
                        END IF;
                        UPDATE {s}.runs SET inputs = p_run->>'inputs',
                            inputs_digest = p_run->>'inputs_digest',
                            updated_at = (p_run->>'updated_at')::float8
                        WHERE run_id = target RETURNING * INTO stored;
                        UPDATE {s}.queue_entries SET priority = p_priority, partition_key = p_partition,
                            not_before = p_not_before, enqueued_at = p_enqueued_at WHERE run_id = target;
                        UPDATE {s}.queue_open SET priority = p_priority, partition_key = p_partition,
                            not_before = p_not_before, enqueued_at = p_enqueued_at WHERE run_id = target;
                        PERFORM pg_notify(p_channel, p_key);
                        outcome := 'replaced';
                        RETURN;
                    END IF;
                END IF;
            END IF;
            WITH ins AS (
                INSERT INTO {s}.runs SELECT * FROM jsonb_populate_record(NULL::{s}.runs, p_run)
                ON CONFLICT (run_id) DO NOTHING RETURNING *
            ), entry AS (
                INSERT INTO {s}.queue_entries (run_id, queue, priority, partition_key, not_before,
                    enqueued_at, debounce_key)
                SELECT run_id, p_queue, p_priority, p_partition, p_not_before, p_enqueued_at, p_debounce
                FROM ins RETURNING run_id
            ), opened AS (
                INSERT INTO {s}.queue_open (run_id, queue, priority, enqueued_at, partition_key, not_before)
                SELECT run_id, p_queue, p_priority, p_enqueued_at, p_partition, p_not_before FROM entry
            )
            SELECT * INTO stored FROM ins;
            IF FOUND THEN
                PERFORM pg_notify(p_channel, p_key);
                outcome := 'created';
                RETURN;
            END IF;
            -- The id exists (a creator that raced this one has committed: a fresh snapshot sees it).
            SELECT * INTO stored FROM {s}.runs WHERE run_id = p_run->>'run_id';
            outcome := 'exists';
        END
        $enqueue$
        """.replace("%(debounce)d", str(DEBOUNCE_LOCK_SPACE)),
        # claim_queued, in one call (see the module's docstring for the locking). Live leases are
        # counted and judged on the server's clock, read once the lock is held; p_now (the
        # caller's clock) judges wake and not-before times. The runs come back in claim order.
        f"""
        CREATE FUNCTION {{s}}.queue_claim(p_queue TEXT, p_now FLOAT8, p_owner TEXT, p_lease FLOAT8,
            p_concurrency INT, p_partition INT, p_rate INT, p_window FLOAT8, p_limit INT,
            p_workflows TEXT[], p_claim_id TEXT, p_lock_key TEXT)
        RETURNS SETOF {{s}}.runs LANGUAGE plpgsql SET enable_sort = off SET jit = off AS $claim$
        DECLARE
            clock FLOAT8;
            running INT := 0;
            in_window INT := 0;
            parts TEXT[] := ARRAY[]::TEXT[];
            counts INT[] := ARRAY[]::INT[];
            unkeyed INT := 0;
            slot INT;
            pos INT;
            taken INT := 0;
            seen INT;
            skipped INT := 0;
            heads BOOLEAN := FALSE;
            full_parts TEXT[];
            cur REFCURSOR;
            page INT := least(p_limit + 1, {PAGE});
            first BOOLEAN;
            after_p BIGINT := -9223372036854775808;
            after_e FLOAT8 := '-Infinity';
            after_r TEXT := '';
            c RECORD;
            got {{s}}.runs;
        BEGIN
            IF p_limit <= 0 THEN
                RETURN;
            END IF;
            clock := extract(epoch FROM clock_timestamp())::float8;
            -- Without limits nothing is counted, so claimers need not take turns: each skips the
            -- runs the others lock (FOR UPDATE SKIP LOCKED below) and takes the next.
            IF p_concurrency IS NOT NULL OR p_partition IS NOT NULL OR p_rate IS NOT NULL THEN
                PERFORM pg_advisory_xact_lock({QUEUE_LOCK_SPACE}, hashtext(p_lock_key));
                clock := extract(epoch FROM clock_timestamp())::float8;  -- read once the lock is held
                FOR c IN
                    SELECT o.partition_key AS part, count(*)::int AS n
                    FROM {{s}}.queue_open AS o JOIN {{s}}.runs AS r ON r.run_id = o.run_id
                    WHERE o.queue = p_queue AND o.held AND r.owner IS NOT NULL AND r.lease_expires_at > clock
                    GROUP BY o.partition_key
                LOOP
                    running := running + c.n;
                    IF c.part IS NULL THEN
                        unkeyed := c.n;
                    ELSE
                        parts := parts || c.part;
                        counts := counts || c.n;
                    END IF;
                END LOOP;
                IF p_concurrency IS NOT NULL AND running >= p_concurrency THEN
                    RETURN;
                END IF;
                IF p_rate IS NOT NULL THEN
                    SELECT count(*) INTO in_window FROM {{s}}.queue_entries
                    WHERE queue = p_queue AND started_at IS NOT NULL AND started_at > clock - p_window;
                END IF;
            END IF;
            -- The queue's open entries in claim order, a page at a time from queue_claims (a
            -- seek past the last one read), each run then read by its primary key: a candidate
            -- costs two lookups, whatever the history. enable_sort is off in this function, so
            -- that however stale the statistics (a queue that grew since its last ANALYZE), the
            -- planner reads the entries in the index's order rather than sorting the whole queue
            -- (and jit is off: the cost it puts on the sorts left would have every claim compiled).
            <<pages>>
            LOOP
                IF NOT heads THEN
                    OPEN cur FOR
                        SELECT o.run_id, o.partition_key AS part, o.priority, o.enqueued_at
                        FROM {{s}}.queue_open AS o
                        WHERE o.queue = p_queue
                            AND (o.priority, o.enqueued_at, o.run_id) > (after_p, after_e, after_r)
                            AND o.not_before <= p_now
                        ORDER BY o.priority, o.enqueued_at, o.run_id LIMIT page;
                ELSE
                    -- Past FLOODED entries of full partitions: the rest is the heads of the other
                    -- partitions (distinct keys by a loose scan of queue_partitions, each one's
                    -- first claimable entries), so a flooded partition costs nothing more.
                    full_parts := ARRAY(SELECT parts[i] FROM generate_subscripts(parts, 1) AS i
                                        WHERE counts[i] >= p_partition);
                    OPEN cur FOR
                        WITH RECURSIVE keys(key) AS (
                            (SELECT partition_key FROM {{s}}.queue_open
                             WHERE queue = p_queue AND partition_key IS NOT NULL
                             ORDER BY partition_key LIMIT 1)
                            UNION ALL
                            SELECT (SELECT o.partition_key FROM {{s}}.queue_open AS o
                                    WHERE o.queue = p_queue AND o.partition_key > keys.key
                                    ORDER BY o.partition_key LIMIT 1)
                            FROM keys WHERE keys.key IS NOT NULL
                        )
                        SELECT h.* FROM keys CROSS JOIN LATERAL (
                            SELECT o.run_id, o.partition_key AS part, o.priority, o.enqueued_at
                            FROM {{s}}.queue_open AS o
                            WHERE o.queue = p_queue AND o.partition_key = keys.key
                                AND (o.priority, o.enqueued_at, o.run_id) > (after_p, after_e, after_r)
                                AND o.not_before <= p_now AND EXISTS (SELECT 1 FROM {{s}}.runs AS r
                                    WHERE r.run_id = o.run_id AND {_claimable("r")}
                                    AND (p_workflows IS NULL OR r.workflow = ANY(p_workflows)))
                            ORDER BY o.priority, o.enqueued_at, o.run_id LIMIT p_partition
                        ) AS h
                        WHERE keys.key IS NOT NULL AND keys.key <> ALL(full_parts)
                        UNION ALL
                        (SELECT o.run_id, o.partition_key, o.priority, o.enqueued_at
                         FROM {{s}}.queue_open AS o
                         WHERE o.queue = p_queue AND o.partition_key IS NULL AND unkeyed < p_partition
                            AND (o.priority, o.enqueued_at, o.run_id) > (after_p, after_e, after_r)
                            AND o.not_before <= p_now AND EXISTS (SELECT 1 FROM {{s}}.runs AS r
                                WHERE r.run_id = o.run_id AND {_claimable("r")}
                                    AND (p_workflows IS NULL OR r.workflow = ANY(p_workflows)))
                         ORDER BY o.priority, o.enqueued_at, o.run_id LIMIT p_partition)
                        ORDER BY priority, enqueued_at, run_id;
                END IF;
                seen := 0;
                LOOP
                    FETCH cur INTO c;
                    EXIT WHEN NOT FOUND;
                    seen := seen + 1;
                    after_p := c.priority;
                    after_e := c.enqueued_at;
                    after_r := c.run_id;
                    IF taken >= p_limit OR (p_concurrency IS NOT NULL AND running >= p_concurrency) THEN
                        CLOSE cur;
                        EXIT pages;
                    END IF;
                    pos := NULL;
                    IF c.part IS NULL THEN
                        slot := unkeyed;
                    ELSE
                        pos := array_position(parts, c.part);
                        slot := coalesce(counts[pos], 0);
                    END IF;
                    -- A full partition is skipped (another partition's run may go); so is a first
                    -- start past the rate window (a run that started before may resume).
                    IF p_partition IS NOT NULL AND slot >= p_partition THEN
                        skipped := skipped + 1;
                        CONTINUE;
                    END IF;
                    SELECT e.started_at IS NULL INTO first
                    FROM {{s}}.queue_entries AS e WHERE e.run_id = c.run_id;
                    CONTINUE WHEN first AND p_rate IS NOT NULL AND in_window >= p_rate;
                    -- Locked (a run another transaction holds is skipped, not waited for) and
                    -- judged on its latest version.
                    PERFORM 1 FROM {{s}}.runs AS r WHERE r.run_id = c.run_id AND {_claimable("r")}
                        AND (p_workflows IS NULL OR r.workflow = ANY(p_workflows))
                        AND EXISTS (SELECT 1 FROM {{s}}.queue_open
                                    WHERE run_id = c.run_id AND not_before <= p_now)
                        FOR UPDATE SKIP LOCKED;
                    CONTINUE WHEN NOT FOUND;
                    UPDATE {{s}}.runs SET status = 'running', lease_token = lease_token + 1, owner = p_owner,
                        lease_expires_at = clock + p_lease, wake_at = NULL, activity = NULL,
                        updated_at = clock, claim_id = p_claim_id
                    WHERE run_id = c.run_id RETURNING * INTO got;
                    IF first THEN
                        UPDATE {{s}}.queue_entries SET started_at = clock WHERE run_id = c.run_id;
                        in_window := in_window + 1;
                    END IF;
                    running := running + 1;
                    taken := taken + 1;
                    IF c.part IS NULL THEN
                        unkeyed := unkeyed + 1;
                    ELSIF pos IS NULL THEN
                        parts := parts || c.part;
                        counts := counts || 1;
                    ELSE
                        counts[pos] := counts[pos] + 1;
                    END IF;
                    RETURN NEXT got;
                END LOOP;
                CLOSE cur;
                EXIT pages WHEN heads OR seen < page;
                heads := p_partition IS NOT NULL AND skipped >= {FLOODED};
                page := least(page * 4, {PAGE});
            END LOOP;
        END
        $claim$
        """,
    ]


def statements(s: str) -> dict[str, str]:
    """The queue statements of the store, with the quoted schema ``s`` filled in; ``run_columns``
    are selected by name from the functions' rows (see ``with_run_columns``)."""
    return {
        "get_queued": f"SELECT {ENTRY_COLUMNS} FROM {s}.queue_entries WHERE run_id = $1",
        # Counts over the queue's open entries (live leases on the server's clock, $2 the caller's now).
        "stats": (
            "SELECT count(*) FILTER (WHERE l.live), "
            "count(*) FILTER (WHERE NOT l.live AND o.not_before > $2 AND r.status = 'pending'), "
            "count(*) FILTER (WHERE NOT l.live AND o.not_before <= $2 "
            "AND (r.status <> 'waiting' OR r.owner IS NOT NULL OR r.wake_at <= $2)) "
            f"FROM {s}.queue_open AS o JOIN {s}.runs AS r ON r.run_id = o.run_id "
            "CROSS JOIN LATERAL (SELECT r.owner IS NOT NULL AND coalesce(r.lease_expires_at, 0) "
            "> extract(epoch FROM now())::float8) AS l(live) WHERE o.queue = $1"
        ),
        "started_in_window": (
            f"SELECT count(*) FROM {s}.queue_entries WHERE queue = $1 AND started_at IS NOT NULL "
            "AND started_at > extract(epoch FROM now())::float8 - $2::float8"
        ),
        # Distinct listed queues, one index probe each (a loose index scan of queue_listed).
        "list_queues": (
            "WITH RECURSIVE q(name) AS ("
            f"(SELECT queue FROM {s}.queue_entries WHERE listed ORDER BY queue LIMIT 1) UNION ALL "
            f"SELECT (SELECT queue FROM {s}.queue_entries WHERE listed AND queue > q.name "
            "ORDER BY queue LIMIT 1) FROM q WHERE q.name IS NOT NULL) "
            "SELECT name FROM q WHERE name IS NOT NULL"
        ),
        # The next not-before time after $2 of each of the queues $1 (one index probe each).
        "next_not_before": (
            "SELECT q.name, (SELECT not_before FROM "
            f"{s}.queue_open WHERE queue = q.name AND not_before > $2 ORDER BY not_before LIMIT 1) "
            "FROM unnest($1::text[]) AS q(name)"
        ),
    }


def with_run_columns(s: str, run_columns: str) -> dict[str, str]:
    """The statements that return runs, selecting ``run_columns`` (``_sql.RUN_COLUMNS``) by name."""
    stored = ", ".join(f"(e.stored).{column}" for column in run_columns.split(", "))
    return {
        "enqueue": (
            f"SELECT e.outcome, {stored} "
            f"FROM {s}.queue_enqueue($1::jsonb, $2, $3, $4, $5, $6, $7, $8, $9, $10) AS e"
        ),
        "claim": (
            f"SELECT {run_columns} FROM {s}.queue_claim($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            "WITH ORDINALITY AS c ORDER BY c.ordinality"
        ),
        # After a lost connection: the runs a claim with this claim id took, if it committed.
        "claimed": (
            f"SELECT {', '.join(f'r.{column}' for column in run_columns.split(', '))} "
            f"FROM {s}.queue_open AS o JOIN {s}.runs AS r ON r.run_id = o.run_id "
            "WHERE o.queue = $1 AND o.held AND r.claim_id = $2 AND r.owner = $3 "
            "ORDER BY o.priority, o.enqueued_at, o.run_id"
        ),
    }
