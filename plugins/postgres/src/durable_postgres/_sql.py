"""The store's SQL: every fixed statement, and the listing query built from a ``RunQuery``.

One clock: every lease comparison and every lease expiry the store writes is the database
server's ``now()`` (``NOW``), so processes on hosts whose clocks disagree agree on who holds a
run. The two times a caller hands over for a lease are placed on the server's clock: the
``now`` of ``due_runs`` as its offset from the store's ``clock`` (``JUDGED``), and a new run's
lease expiry as its length (``GRANTED``). Times a caller chooses and the core compares (a run's
``created_at`` and ``deadline``, a durable sleep's ``wake_at``) stay the caller's.
"""

from __future__ import annotations

from typing import Any

from durable._lifecycle import CLAIMABLE
from durable.store import RunQuery, RunStatus

RUN_COLUMNS = (
    "run_id, workflow, status, inputs, inputs_digest, created_at, updated_at, result, error, owner, "
    "lease_token, lease_expires_at, wake_at, deadline, parent_run_id, cancel_requested, activity, version, "
    "context"
)
"""A run row's columns in ``durable._decode.RUN_FIELDS`` order."""
STEP_COLUMNS = (
    "run_id, key, task, args_digest, status, result, error, attempts, started_at, finished_at, version"
)
SIGNAL_COLUMNS = "run_id, name, delivery_id, payload, seq, sent_at"

NOW = "extract(epoch FROM now())::float8"
"""The database server's clock: the start of the statement's transaction, in epoch seconds."""
JUDGED = f"({NOW} + $1::float8)"
"""``due_runs``' ``now`` on the server's clock: ``$1`` is how far it is from the store's ``clock``."""
CLOCK_TOLERANCE = 1.0
"""Seconds a new run's lease expiry, by its creator's clock, may differ from the server's view of
it and still be written as given (so the stored record is the one the creator holds)."""
LIVE_LEASE = f"(owner IS NOT NULL AND lease_expires_at IS NOT NULL AND lease_expires_at > {NOW})"
STORED = frozenset(RunStatus) - {RunStatus.INTERRUPTED, RunStatus.CORRUPT}
"""The statuses a run row may hold (``interrupted`` and ``corrupt`` are only reported)."""
SIGNAL_LOCK_SPACE = 0x6475  # first key of the two-int advisory locks that order a run's deliveries


def granted(expiry: str, clock: str) -> str:
    """A new run's lease expiry on the server's clock: ``expiry`` (by the creator's clock, read as
    ``clock`` when it sent the run) as given when the two clocks agree within ``CLOCK_TOLERANCE``,
    else the same lease length from the server's now. A creator whose clock is off can give
    neither a lease already over nor one longer than asked."""
    return (
        f"CASE WHEN {expiry} IS NULL THEN NULL WHEN abs({clock} - {NOW}) <= {CLOCK_TOLERANCE} "
        f"THEN {expiry} ELSE {NOW} + ({expiry} - {clock}) END"
    )


def columns(alias: str) -> str:
    """``RUN_COLUMNS`` of the table named ``alias`` in a join."""
    return ", ".join(f"{alias}.{column}" for column in RUN_COLUMNS.split(", "))


def status_in(statuses: frozenset[RunStatus]) -> str:
    """``status IN ('a', 'b')``, values sorted, as SQL text (a partial index's WHERE clause must be
    implied by the query's own text, not by a parameter's value)."""
    return f"status IN ({', '.join(repr(status.value) for status in sorted(statuses))})"


def _finite(column: str, *, nullable: bool) -> str:
    # A hand-edited NaN or infinity reads as a corrupt run (durable._decode): never due. x - x is 0
    # for a finite x only, and unlike a range it gives the planner no index to read the runs by.
    return f"coalesce({column} - {column}, 0) = 0" if nullable else f"{column} - {column} = 0"


def _due(r: str) -> str:
    """``durable._lifecycle.is_due`` of a run row ``r`` listed in ``runs_live`` (so its status is in
    ``DUE_STATUSES``: a test checks the trigger keeps it so) at ``JUDGED``, readable rows only.

    No condition on the status itself: it would let the planner read the runs by the status index
    (where runs that finished leave dead entries) instead of following ``runs_live``."""
    return (
        f"NOT ({r}.owner IS NOT NULL AND coalesce({r}.lease_expires_at, 0) > {JUDGED}) "
        f"AND ({r}.status <> 'waiting' OR {r}.owner IS NOT NULL OR {r}.wake_at <= {JUDGED}) "
        f"AND {_finite(f'{r}.created_at', nullable=False)} AND {_finite(f'{r}.updated_at', nullable=False)} "
        f"AND {_finite(f'{r}.lease_expires_at', nullable=True)} AND {_finite(f'{r}.wake_at', nullable=True)}"
    )


def _due_query(s: str, only: str) -> str:
    # Each run is looked up by id from its runs_live entry, in a subquery the planner cannot merge
    # into a join (its LIMIT): however stale the statistics, the poll follows runs_live and never
    # reads runs by another index (where the history is).
    def listed(where: str) -> str:
        return (
            f"(SELECT {columns('r')} FROM {s}.runs_live AS l CROSS JOIN LATERAL "
            f"(SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = l.run_id LIMIT 1) AS r "
            f"WHERE {where}{only} AND {_due('r')} ORDER BY l.created_at, l.run_id LIMIT $2)"
        )

    # The woken as a range closed below: without statistics (never analyzed, autovacuum off) the
    # planner takes a range for a small part of the table and reads the index; one bound it
    # takes for a third, and reads every sleeper.
    ready = listed("l.wake_at IS NULL")
    woken = listed(f"l.wake_at >= '-Infinity'::float8 AND l.wake_at <= {JUDGED}")
    return f"SELECT * FROM ({ready} UNION ALL {woken}) AS due ORDER BY created_at, run_id LIMIT $2"


def statements(s: str) -> dict[str, str]:
    """Every fixed statement of the store, with the quoted schema ``s`` filled in."""
    # A step's first completed write wins; a failed step is replaced by a later write (a row that
    # is neither, damaged, is left as it is: reading it back raises StoreCorrupted).
    replace_unless_completed = (
        "ON CONFLICT (run_id, key) DO UPDATE SET task = EXCLUDED.task, "
        "args_digest = EXCLUDED.args_digest, status = EXCLUDED.status, result = EXCLUDED.result, "
        "error = EXCLUDED.error, attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, "
        f"finished_at = EXCLUDED.finished_at, version = EXCLUDED.version WHERE {s}.steps.status = 'failed'"
    )
    return {
        "token": f"SELECT lease_token FROM {s}.runs WHERE run_id = $1",
        "get_run": f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1",
        # The outer SELECT runs on the statement's snapshot: it sees a row that existed before,
        # not the one the CTE inserts (that one is `run` itself, with the lease expiry `granted`).
        # $20 is the creator's clock when it sent the run.
        "create_run": (
            f"WITH ins AS (INSERT INTO {s}.runs ({RUN_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, "
            f"{granted('$12::float8', '$20::float8')}, $13, $14, $15, $16, $17, $18, $19) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING lease_expires_at) "
            "SELECT EXISTS (SELECT 1 FROM ins) AS created, (SELECT lease_expires_at FROM ins) AS granted, "
            f"r.* FROM (SELECT 1) AS one "
            f"LEFT JOIN (SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = $1) AS r ON TRUE"
        ),
        # create_run for many runs at once; the caller sends no run id twice. The rows it did not
        # insert are read afterwards, by a statement whose snapshot sees every committed creator.
        "create_run_batch": (
            f"INSERT INTO {s}.runs ({RUN_COLUMNS}) "
            "SELECT v->>0, v->>1, v->>2, v->>3, v->>4, (v->>5)::float8, (v->>6)::float8, v->>7, v->>8, "
            f"v->>9, (v->>10)::int8, {granted('(v->>11)::float8', '$2::float8')}, (v->>12)::float8, "
            "(v->>13)::float8, v->>14, (v->>15)::boolean, v->>16, v->>17, v->>18 "
            "FROM jsonb_array_elements($1::jsonb) AS e(v) "
            "ON CONFLICT (run_id) DO NOTHING RETURNING run_id, lease_expires_at"
        ),
        "get_runs": f"SELECT {RUN_COLUMNS} FROM {s}.runs WHERE run_id = ANY($1::text[])",
        # LIVE_LEASE is strict (expires after now): a lease given back with renew_lease(lease, 0)
        # is claimable at once.
        "claim": (
            f"UPDATE {s}.runs SET status = 'running', lease_token = lease_token + 1, owner = $2, "
            f"lease_expires_at = {NOW} + $3::float8, wake_at = NULL, activity = NULL, updated_at = {NOW}, "
            f"claim_id = $4 WHERE run_id = $1 AND {status_in(CLAIMABLE)} AND NOT {LIVE_LEASE} "
            "RETURNING lease_token, lease_expires_at"
        ),
        "claimed": f"SELECT lease_token, lease_expires_at FROM {s}.runs WHERE run_id = $1 AND claim_id = $2",
        "renew": (
            f"UPDATE {s}.runs SET owner = $3, lease_expires_at = {NOW} + $4::float8, "
            "activity = coalesce($5, activity) "
            f"WHERE run_id = $1 AND lease_token = $2 RETURNING {RUN_COLUMNS}"
        ),
        "update": (
            f"UPDATE {s}.runs SET status = $3, result = $4, error = $5, wake_at = $6, activity = $7, "
            f"updated_at = {NOW} WHERE run_id = $1 AND lease_token = $2"
        ),
        "update_release": (
            f"UPDATE {s}.runs SET status = $3, result = $4, error = $5, wake_at = $6, activity = $7, "
            f"updated_at = {NOW}, owner = NULL, lease_expires_at = NULL "
            "WHERE run_id = $1 AND lease_token = $2"
        ),
        # update/update_release for many runs at once, fenced row by row; the caller sends no run
        # id twice (an UPDATE ... FROM applies one input row per target row, unpredictably which).
        "update_run_batch": (
            f"UPDATE {s}.runs AS r SET status = i.status, result = i.result, error = i.error, "
            f"wake_at = i.wake_at, activity = i.activity, updated_at = {NOW}, "
            "owner = CASE WHEN i.release THEN NULL ELSE r.owner END, "
            "lease_expires_at = CASE WHEN i.release THEN NULL ELSE r.lease_expires_at END "
            "FROM (SELECT v->>0 AS run_id, (v->>1)::int8 AS token, v->>2 AS status, v->>3 AS result, "
            "v->>4 AS error, (v->>5)::float8 AS wake_at, (v->>6)::boolean AS release, v->>7 AS activity "
            "FROM jsonb_array_elements($1::jsonb) AS e(v)) AS i "
            "WHERE r.run_id = i.run_id AND r.lease_token = i.token RETURNING r.run_id"
        ),
        "tokens": f"SELECT run_id, lease_token FROM {s}.runs WHERE run_id = ANY($1::text[])",
        # A run whose status no release writes is left as it is (request_cancel returns it, corrupt).
        "cancel": (
            f"UPDATE {s}.runs SET cancel_requested = TRUE, updated_at = {NOW}, status = CASE "
            f"WHEN status NOT IN ('completed', 'cancelled') AND NOT {LIVE_LEASE} THEN 'cancelled' "
            f"ELSE status END WHERE run_id = $1 AND {status_in(STORED)} RETURNING {RUN_COLUMNS}"
        ),
        "reset": (
            f"UPDATE {s}.runs SET status = 'pending', cancel_requested = FALSE, error = NULL, "
            f"wake_at = NULL, activity = NULL, updated_at = {NOW} WHERE run_id = $1 "
            f"AND status IN ('failed', 'cancelled') RETURNING {RUN_COLUMNS}"
        ),
        # Exactly durable._lifecycle.is_due, oldest first, from runs_live (the runs that may be
        # due, kept by triggers: _schema): its first n runs that may be due at any time, in
        # creation order, and its parked runs whose wake time has come, merged. $1: JUDGED's offset.
        "due": _due_query(s, ""),
        # due with workflows=: only runs of those workflows ($3), still read from runs_live.
        "due_of": _due_query(s, " AND l.workflow = ANY($3::text[])"),
        # Keeps runs_live and queue_open small where autovacuum is off or slow (PostgresStore._tidy).
        "tidy": f"VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, TRUNCATE OFF) {s}.runs_live, {s}.queue_open",
        "delete": (
            f"WITH steps AS (DELETE FROM {s}.steps WHERE run_id = $1), "
            f"signals AS (DELETE FROM {s}.signals WHERE run_id = $1) "
            f"DELETE FROM {s}.runs WHERE run_id = $1"
        ),
        # StepRecord.from_rows's columns: every step column but the run id.
        "load_steps": (
            f"SELECT {STEP_COLUMNS.removeprefix('run_id, ')} FROM {s}.steps "
            "WHERE run_id = $1 ORDER BY finished_at, key"
        ),
        # FOR SHARE locks the run row until commit, so a claim (which updates it) waits for this
        # checkpoint, and one that committed first makes the re-checked token differ: no write.
        "save_step": (
            f"INSERT INTO {s}.steps ({STEP_COLUMNS}) "
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 "
            f"FROM {s}.runs WHERE run_id = $1 AND lease_token = $12 FOR SHARE {replace_unless_completed}"
        ),
        # save_step for many runs at once: the same fencing, row by row (FOR SHARE OF r locks
        # each run row to commit; a claim that committed first fails the re-checked join).
        # RETURNING names the rows written; the caller sends no (run_id, key) twice.
        "save_step_batch": (
            f"INSERT INTO {s}.steps ({STEP_COLUMNS}) "
            "SELECT i.run_id, i.key, i.task, i.args_digest, i.status, i.result, i.error, i.attempts, "
            "i.started_at, i.finished_at, i.version "
            "FROM (SELECT v->>0 AS run_id, v->>1 AS key, v->>2 AS task, v->>3 AS args_digest, "
            "v->>4 AS status, v->>5 AS result, v->>6 AS error, (v->>7)::int4 AS attempts, "
            "(v->>8)::float8 AS started_at, (v->>9)::float8 AS finished_at, v->>10 AS version, "
            "(v->>11)::int8 AS token "
            "FROM jsonb_array_elements($1::jsonb) AS e(v)) AS i "
            f"JOIN {s}.runs AS r ON r.run_id = i.run_id AND r.lease_token = i.token FOR SHARE OF r "
            f"{replace_unless_completed} RETURNING run_id, key"
        ),
        "stored_steps": (
            f"SELECT i.run_id, i.key, r.lease_token, st.* FROM unnest($1::text[], $2::text[]) "
            f"AS i(run_id, key) LEFT JOIN {s}.runs AS r ON r.run_id = i.run_id "
            f"LEFT JOIN (SELECT {STEP_COLUMNS} FROM {s}.steps) AS st "
            "ON st.run_id = i.run_id AND st.key = i.key"
        ),
        "stored_step": (
            f"SELECT r.token, st.* FROM (SELECT (SELECT lease_token FROM {s}.runs WHERE run_id = $1) "
            f"AS token) AS r LEFT JOIN (SELECT {STEP_COLUMNS} FROM {s}.steps "
            "WHERE run_id = $1 AND key = $2) AS st ON TRUE"
        ),
        # The advisory lock (held to commit) orders a run's senders, so a delivery becomes
        # visible only after every delivery with a smaller seq: the n-th delivery never changes.
        "send_signal": (
            "WITH lock AS (SELECT pg_advisory_xact_lock($6::int, hashtext($1))), "
            f"ins AS (INSERT INTO {s}.signals (run_id, name, delivery_id, payload, sent_at, sender) "
            f"SELECT $1, $2, $3, $4, {NOW}, $5 FROM lock "
            "ON CONFLICT (run_id, name, delivery_id) DO NOTHING RETURNING sent_at), "
            f"woken AS (UPDATE {s}.runs SET wake_at = ins.sent_at, updated_at = ins.sent_at FROM ins "
            f"WHERE {s}.runs.run_id = $1 AND {s}.runs.status = 'waiting' RETURNING 1), "
            "notified AS (SELECT pg_notify($7, $8) FROM ins) "
            "SELECT (SELECT count(*) FROM ins) + 0 * (SELECT count(*) FROM notified) "
            "+ 0 * (SELECT count(*) FROM woken) = 1"
        ),
        "sent_by": (
            f"SELECT EXISTS (SELECT 1 FROM {s}.signals WHERE run_id = $1 AND name = $2 "
            "AND delivery_id = $3 AND sender = $4)"
        ),
        "signals": f"SELECT {SIGNAL_COLUMNS} FROM {s}.signals WHERE run_id = $1 ORDER BY seq",
        "signals_named": (
            f"SELECT {SIGNAL_COLUMNS} FROM {s}.signals WHERE run_id = $1 AND name = $2 ORDER BY seq"
        ),
        "nth_signal": (
            f"SELECT {SIGNAL_COLUMNS} FROM {s}.signals WHERE run_id = $1 AND name = $2 "
            "ORDER BY seq OFFSET $3 LIMIT 1"
        ),
    }


LISTING_ORDER = "ORDER BY created_at DESC, run_id"


def list_runs(s: str, query: RunQuery) -> tuple[str, list[Any]] | None:
    """The statement listing ``query``'s runs and its parameters (``None``: no run can match).

    Every filter reads an index, so a page costs the same however many other runs the schema
    holds: newest first on ``runs_by_created``, by workflow on ``runs_by_workflow``, by version on
    ``runs_by_version`` (partial: only runs that have one), by status on
    ``runs_by_status`` (one ordered branch per status, merged: a page of ``limit`` after
    ``offset`` reads at most that many rows of each), an id prefix as a range of the primary key
    (``starts_with`` on a "C" collated column; a run's children share its id and a slash), and
    ``after`` as a seek in the same order. ``offset`` still reads the rows it skips.
    """
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    where: list[str] = []
    if query.workflow is not None:
        where.append(f"workflow = {param(query.workflow)}")
    if query.version is not None:
        where.append(f"version = {param(query.version)}")
    if query.id_prefix is not None:
        # starts_with, not LIKE: the prefix may contain % and _ and must match literally.
        where.append(f"starts_with(run_id, {param(query.id_prefix)})")
    if query.created_after is not None:
        where.append(f"created_at >= {param(float(query.created_after))}")
    if query.created_before is not None:
        where.append(f"created_at < {param(float(query.created_before))}")
    if query.updated_before is not None:
        where.append(f"updated_at < {param(float(query.updated_before))}")
    if query.after is not None:
        created_at, run_id = float(query.after[0]), str(query.after[1])
        # The first condition is the seek (an index bound on created_at); the second drops the
        # runs before `after` among its ties, which are listed by run id.
        c, r = param(created_at), param(run_id)
        where.append(f"created_at <= {c} AND (created_at < {c} OR run_id > {r})")
    limit, offset = param(int(query.limit)), param(int(query.offset))
    runs = f"SELECT {RUN_COLUMNS} FROM {s}.runs"
    if query.statuses is None:
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        return f"{runs} {condition} {LISTING_ORDER} LIMIT {limit} OFFSET {offset}", params
    if not query.statuses:
        return None
    depth = param(int(query.limit) + int(query.offset))
    branches = [
        f"({runs} WHERE {' AND '.join([f'status = {param(status.value)}', *where])} "
        f"{LISTING_ORDER} LIMIT {depth})"
        for status in sorted(query.statuses)
    ]
    return (
        f"SELECT * FROM ({' UNION ALL '.join(branches)}) AS u {LISTING_ORDER} LIMIT {limit} OFFSET {offset}",
        params,
    )
