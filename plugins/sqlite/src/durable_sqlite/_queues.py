"""Named queues in SQLite (``Capability.QUEUES``, docs/QUEUES.md): each method's write or read, as a
function of one connection, which ``SQLiteStore`` runs as one transaction (``BEGIN IMMEDIATE``).

The write lock serialises every claimer of the file, so a claim counts live leases and the rate
window and takes its runs with nobody in between: no lock of our own, no extra round trip.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Collection

from durable._decode import run_from_row
from durable.store import Enqueued, Lease, QueuedRun, QueueLimits, QueueStats, RunRecord
from durable_sqlite._queries import RUN_COLUMNS
from durable_sqlite._schema import DEBOUNCE_PREDICATE, LEASED_PREDICATE, QUEUE_OPEN_PREDICATE

ENTRY_COLUMNS = "run_id, queue, priority, partition_key, not_before, enqueued_at, debounce_key, started_at"

# The run of a queue that starts with this key may join: pending, never claimed (token 0) and never
# started. The WHERE term repeats queue_debounce's word for word (SQLite then uses the index).
DEBOUNCE_TARGET = (
    "SELECT q.run_id FROM queue_entries AS q INDEXED BY queue_debounce JOIN runs AS r ON r.run_id = q.run_id "
    f"WHERE q.queue = ? AND q.debounce_key = ? AND {DEBOUNCE_PREDICATE} "
    "AND r.status = 'pending' AND r.lease_token = 0 LIMIT 1"
)

# A queue's live leases (store clock ?2), by partition: a range of runs_leased (the runs some owner
# holds now, across the file), joined to their entries. A run whose owner died leaves the range
# when its lease expires: slots are leases, never counters.
LIVE_LEASES = (
    "SELECT q.partition_key, count(*) FROM runs AS r INDEXED BY runs_leased "
    "JOIN queue_entries AS q ON q.run_id = r.run_id "
    f"WHERE r.{LEASED_PREDICATE} AND r.lease_expires_at > ?2 AND q.queue = ?1 GROUP BY q.partition_key"
)

STARTS_SINCE = (
    "SELECT count(*) FROM queue_entries INDEXED BY queue_starts "
    "WHERE queue = ? AND started_at IS NOT NULL AND started_at > ?"
)

# Candidates in claim order, from queue_claims (entries of runs that may be due): what
# durable._lifecycle.is_due accepts at the caller's now ?2 with no live lease on the store's
# clock ?3 either, not before their not_before. ?1 is the queue.
CANDIDATES = (
    "SELECT q.run_id, q.partition_key, q.started_at IS NULL, q.debounce_key "
    "FROM queue_entries AS q INDEXED BY queue_claims JOIN runs AS r ON r.run_id = q.run_id "
    f"WHERE q.queue = ?1 AND q.{QUEUE_OPEN_PREDICATE} AND q.not_before <= ?2 "
    "AND r.status IN ('pending', 'running', 'waiting') "
    "AND NOT (r.owner IS NOT NULL AND coalesce(r.lease_expires_at, 0) > max(?2, ?3)) "
    "AND (r.status <> 'waiting' OR r.owner IS NOT NULL OR r.wake_at <= ?2) "
    "{workflows}ORDER BY q.priority, q.enqueued_at, q.run_id"
)
CANDIDATES_ANY = CANDIDATES.format(workflows="")
CANDIDATES_OF = CANDIDATES.format(workflows="AND r.workflow IN (SELECT value FROM json_each(?4)) ")

# What claim_run writes, to a run the candidates' query chose in this transaction.
TAKE = (
    "UPDATE runs SET status = 'running', lease_token = lease_token + 1, owner = ?, "
    "lease_expires_at = ?, wake_at = NULL, activity = NULL, updated_at = ? "
    f"WHERE run_id = ? RETURNING {RUN_COLUMNS}"
)

STATS = (
    "SELECT "
    "coalesce(sum(r.owner IS NOT NULL AND coalesce(r.lease_expires_at, 0) > ?3), 0), "
    "coalesce(sum(NOT (r.owner IS NOT NULL AND coalesce(r.lease_expires_at, 0) > ?3) "
    "AND q.not_before > ?2 AND r.status = 'pending'), 0), "
    "coalesce(sum(NOT (r.owner IS NOT NULL AND coalesce(r.lease_expires_at, 0) > max(?2, ?3)) "
    "AND q.not_before <= ?2 AND (r.status <> 'waiting' OR r.owner IS NOT NULL OR r.wake_at <= ?2)), 0) "
    "FROM queue_entries AS q INDEXED BY queue_claims JOIN runs AS r ON r.run_id = q.run_id "
    f"WHERE q.queue = ?1 AND q.{QUEUE_OPEN_PREDICATE}"
)


def _insert_entry(db: sqlite3.Connection, run: RunRecord, entry: QueuedRun) -> None:
    db.execute(
        f"INSERT INTO queue_entries ({ENTRY_COLUMNS}, run_status) VALUES (?,?,?,?,?,?,?,NULL,?)",
        (
            run.run_id, entry.queue, entry.priority, entry.partition_key, float(entry.not_before),
            float(entry.enqueued_at), entry.debounce_key, run.status.value,
        ),
    )  # fmt: skip


def _run(label: str, db: sqlite3.Connection, run_id: str) -> RunRecord:
    row = db.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return run_from_row(label, row)


def enqueue(
    label: str, db: sqlite3.Connection, run: RunRecord, entry: QueuedRun, insert_run: str
) -> tuple[RunRecord, Enqueued]:
    """``Store.enqueue_run`` in the write transaction ``db`` is in; ``insert_run`` is the
    store's ``INSERT ... ON CONFLICT DO NOTHING`` of a run row."""
    if entry.debounce_key is not None:
        found = db.execute(DEBOUNCE_TARGET, (entry.queue, entry.debounce_key)).fetchone()
        if found is not None:
            current = _run(label, db, found[0])
            if current.workflow != run.workflow:
                return current, Enqueued.EXISTS
            row = db.execute(
                f"UPDATE runs SET inputs = ?, inputs_digest = ?, updated_at = ? WHERE run_id = ? "
                f"RETURNING {RUN_COLUMNS}",
                (run.inputs, run.inputs_digest, run.updated_at, current.run_id),
            ).fetchone()
            db.execute(
                "UPDATE queue_entries SET priority = ?, partition_key = ?, not_before = ?, enqueued_at = ? "
                "WHERE run_id = ?",
                (entry.priority, entry.partition_key, entry.not_before, entry.enqueued_at, current.run_id),
            )
            return run_from_row(label, row), Enqueued.REPLACED
    if db.execute(insert_run, run_values(run)).rowcount == 0:
        return _run(label, db, run.run_id), Enqueued.EXISTS
    _insert_entry(db, run, entry)
    return run, Enqueued.CREATED


def run_values(run: RunRecord) -> tuple[object, ...]:
    """A run row's values in ``RUN_COLUMNS`` order."""
    return (
        run.run_id, run.workflow, run.status.value, run.inputs, run.inputs_digest, run.created_at,
        run.updated_at, run.result, run.error, run.owner, run.lease_token, run.lease_expires_at,
        run.wake_at, run.deadline, run.parent_run_id, int(run.cancel_requested), run.activity, run.version,
        run.context,
    )  # fmt: skip


def claim(
    label: str,
    db: sqlite3.Connection,
    queue: str,
    now: float,
    owner: str,
    lease_seconds: float,
    limits: QueueLimits,
    limit: int,
    workflows: Collection[str] | None,
) -> list[tuple[RunRecord, Lease]]:
    """``Store.claim_queued`` in the write transaction ``db`` is in (so nobody claims between the
    counts and the claims)."""
    clock = time.time()  # leases and rate windows are on the store's clock
    by_partition: Counter[str | None] = Counter(dict(db.execute(LIVE_LEASES, (queue, clock)).fetchall()))
    running = sum(by_partition.values())
    in_window = 0
    if limits.rate_limit is not None:
        in_window = db.execute(STARTS_SINCE, (queue, clock - limits.rate_limit[1])).fetchone()[0]
    if workflows is None:
        cursor = db.execute(CANDIDATES_ANY, (queue, float(now), clock))
    else:
        cursor = db.execute(CANDIDATES_OF, (queue, float(now), clock, json.dumps(sorted(workflows))))
    chosen: list[tuple[str, bool]] = []
    for run_id, partition, first, _ in cursor:
        if len(chosen) >= limit or (limits.concurrency is not None and running >= limits.concurrency):
            break
        full = limits.partition_concurrency
        if full is not None and by_partition[partition] >= full:
            continue  # this partition is full; another one's run may go
        if first and limits.rate_limit is not None and in_window >= limits.rate_limit[0]:
            continue  # no new start in this window; a run started before may resume
        chosen.append((run_id, bool(first)))
        running += 1
        by_partition[partition] += 1
        in_window += bool(first)
    cursor.close()
    expires = clock + lease_seconds
    claimed: list[tuple[RunRecord, Lease]] = []
    for run_id, first in chosen:
        row = db.execute(TAKE, (owner, expires, clock, run_id)).fetchone()
        if first:
            db.execute("UPDATE queue_entries SET started_at = ? WHERE run_id = ?", (clock, run_id))
        run = run_from_row(label, row)
        claimed.append((run, Lease(run_id, owner, run.lease_token, expires)))
    return claimed


def get_entry(db: sqlite3.Connection, run_id: str) -> QueuedRun | None:
    row = db.execute(f"SELECT {ENTRY_COLUMNS} FROM queue_entries WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else QueuedRun(*row)


def stats(db: sqlite3.Connection, queue: str, now: float, window: float | None) -> QueueStats:
    clock = time.time()
    running, delayed, queued = db.execute(STATS, (queue, float(now), clock)).fetchone()
    started = None
    if window is not None:
        started = db.execute(STARTS_SINCE, (queue, clock - window)).fetchone()[0]
    return QueueStats(queue, queued=queued, delayed=delayed, running=running, started_in_window=started)


def names(db: sqlite3.Connection) -> list[str]:
    """Queues holding a run that is neither completed nor cancelled (``queue_listed``: one seek
    per status)."""
    rows = db.execute(
        "SELECT DISTINCT queue FROM queue_entries INDEXED BY queue_listed "
        "WHERE run_status IN ('failed', 'pending', 'running', 'waiting') ORDER BY queue"
    ).fetchall()
    return [row[0] for row in rows]


def next_not_before(db: sqlite3.Connection, queues: Collection[str], after: float) -> float | None:
    """The earliest ``not_before`` after ``after`` of an open entry of ``queues`` (``queue_delays``)."""
    found = [
        db.execute(
            "SELECT min(not_before) FROM queue_entries INDEXED BY queue_delays "
            f"WHERE queue = ? AND {QUEUE_OPEN_PREDICATE} AND not_before > ?",
            (queue, after),
        ).fetchone()[0]
        for queue in queues
    ]
    times = [t for t in found if t is not None]
    return min(times) if times else None
