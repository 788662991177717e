"""The store's SQL: statements built once, and listings built for the filters of each query so that
each one seeks an index in listing order (its cost does not grow with the history the file holds).
"""

from __future__ import annotations

from typing import Any

from durable._decode import RUN_FIELDS
from durable._lifecycle import CLAIMABLE
from durable.store import RunQuery, RunStatus
from durable_sqlite._schema import ACTIVE_PREDICATE, PARKED_PREDICATE

RUN_COLUMNS = ", ".join(RUN_FIELDS)
"""A run row's columns in the order ``durable._decode.run_from_row`` reads them."""
STEP_COLUMNS = (
    "run_id, key, task, args_digest, status, result, error, attempts, started_at, finished_at, version"
)
SIGNAL_COLUMNS = "run_id, name, delivery_id, payload, seq, sent_at"


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

# Exactly the runs durable._lifecycle.is_due accepts, oldest first, from two partial indexes: the
# runs that may be due whoever holds them (pending; running or waiting with an owner, due once the
# lease expired), in creation order, and the parked runs whose wake time came (a run parked on a
# signal has none until a delivery sets it). Parked runs that are not due are never read, however
# many there are. Each branch repeats its index's WHERE term word for word (SQLite uses a partial
# index only then); INDEXED BY makes the statement fail, rather than quietly scan the table, if an
# index could not serve it. ?1 is now, ?2 the limit. A run with a queue entry is left out (queue
# claims serve it, within its queue's limits): one primary-key probe of queue_entries per run read.
UNQUEUED = "AND NOT EXISTS (SELECT 1 FROM queue_entries AS q WHERE q.run_id = runs.run_id) "
DUE_RUNS = (
    f"SELECT * FROM (SELECT {RUN_COLUMNS} FROM runs INDEXED BY runs_active WHERE {ACTIVE_PREDICATE} "
    f"AND NOT (owner IS NOT NULL AND coalesce(lease_expires_at, 0) > ?1) {UNQUEUED}"
    "{workflows}ORDER BY created_at, run_id LIMIT ?2) "
    f"UNION ALL SELECT * FROM (SELECT {RUN_COLUMNS} FROM runs INDEXED BY runs_parked "
    f"WHERE {PARKED_PREDICATE} AND wake_at <= ?1 {UNQUEUED}"
    "{workflows}ORDER BY created_at, run_id LIMIT ?2) "
    "ORDER BY created_at, run_id LIMIT ?2"
)
DUE_RUNS_ANY = DUE_RUNS.format(workflows="")
# With workflows=: only runs of those workflows (a JSON array parameter ?3: one statement text
# however many names).
DUE_RUNS_OF = DUE_RUNS.format(workflows="AND workflow IN (SELECT value FROM json_each(?3)) ")

LISTING_ORDER = "ORDER BY created_at DESC, run_id"


def list_runs(query: RunQuery) -> tuple[str, list[Any]]:
    """The statement and parameters of ``Store.list_runs(query)`` (``query.statuses`` not empty).

    Each filter has an index giving rows in listing order (``runs_by_created``, by status, by
    workflow, by version), so a page reads about ``limit + offset`` rows; ``after`` seeks past the previous
    page. Several statuses are one seek each, merged: ``status IN (...)`` would read every run of
    those statuses to sort them. A status and a workflow read the status's index (a page reads
    that status's runs until it has found its own). A prefix is a range of the primary key.
    """
    where: list[str] = []
    params: list[Any] = []
    if query.workflow is not None:
        where.append("workflow = ?")
        params.append(query.workflow)
    if query.version is not None:
        where.append("version = ?")  # runs_listed_by_version (a version implies VERSIONED_PREDICATE)
        params.append(query.version)
    if query.id_prefix:
        # A range of the primary key, then substr() to match exactly (never LIKE: a prefix may
        # hold % and _). Text compares as UTF-8 bytes, which is code point order.
        where.append("run_id >= ?")
        params.append(query.id_prefix)
        upper = successor(query.id_prefix)
        if upper is not None:
            where.append("run_id < ?")
            params.append(upper)
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
    if query.after is not None:
        # Listed after (created_at, run_id): the first term is the one an index seeks.
        created_at, run_id = query.after
        where.append("created_at <= ? AND (created_at < ? OR run_id > ?)")
        params.extend([created_at, created_at, run_id])
    statuses = None if query.statuses is None else sorted(status.value for status in query.statuses)
    both = statuses is not None and query.workflow is not None and not query.id_prefix
    runs = "runs INDEXED BY runs_listed_by_status" if both else "runs"
    if statuses is None or len(statuses) == 1:
        if statuses is not None:
            where.insert(0, "status = ?")
            params.insert(0, statuses[0])
        sql = f"SELECT {RUN_COLUMNS} FROM {runs}{_where(where)} {LISTING_ORDER} LIMIT ? OFFSET ?"
        return sql, [*params, query.limit, query.offset]
    first = query.limit + query.offset
    one_status = _where(["status = ?", *where])
    branch = f"SELECT * FROM (SELECT {RUN_COLUMNS} FROM {runs}{one_status} {LISTING_ORDER} LIMIT ?)"
    sql = " UNION ALL ".join([branch] * len(statuses)) + f" {LISTING_ORDER} LIMIT ? OFFSET ?"
    merged = [value for status in statuses for value in (status, *params, first)]
    return sql, [*merged, query.limit, query.offset]


def _where(terms: list[str]) -> str:
    return " WHERE " + " AND ".join(terms) if terms else ""


def successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (``None``: none is)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)  # surrogates are no text
            return "".join(chars)
        chars.pop()
    return None


# A journal in StepRecord.from_rows's column order, by key: the primary-key index gives that order
# for free. Then sorted by finish time in Python (stable: ties stay in key order), not by ORDER BY:
# SQLite sorts through a temporary b-tree, which costs more per row (measured on 1,000-step runs).
LOAD_STEPS = f"SELECT {STEP_COLUMNS.removeprefix('run_id, ')} FROM steps WHERE run_id = ? ORDER BY key"
LOAD_STEP = f"SELECT {STEP_COLUMNS.removeprefix('run_id, ')} FROM steps WHERE run_id = ? AND key = ?"

# The fencing check and the first-completed-writer-wins insert, in one statement. Built once:
# every checkpoint runs it, and sqlite3 finds its prepared statement by the text.
SAVE_STEP = (
    f"INSERT INTO steps ({STEP_COLUMNS}) SELECT ?,?,?,?,?,?,?,?,?,?,? "
    "WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND lease_token = ?) "
    "ON CONFLICT (run_id, key) DO UPDATE SET task = excluded.task, "
    "args_digest = excluded.args_digest, status = excluded.status, result = excluded.result, "
    "error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at, "
    "finished_at = excluded.finished_at, version = excluded.version WHERE steps.status <> 'completed'"
)
