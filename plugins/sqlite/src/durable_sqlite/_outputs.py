"""Events and streams in SQLite (``Capability.STREAMS``, docs/STREAMS.md): each method's write or
read as a function of one connection, which ``SQLiteStore`` runs as one transaction (``BEGIN
IMMEDIATE``) or one statement, and what the change watcher compares to wake another process's
readers.

The write lock serialises every appender of the file, so ``MAX(position) + 1`` under it gives
offsets with no gap and no repeat; the fencing check reads the run's token under the same lock.
Each write bumps the run's ``output_changes`` counter in its transaction: a watcher that sees the
file change (``PRAGMA data_version``) reads the counters (and statuses) of the runs it watches and
wakes only the readers of those that moved.
"""

from __future__ import annotations

import json
import operator
import sqlite3

from durable.errors import LeaseLost
from durable.store import Lease, StreamItems

BUMP = (
    "INSERT INTO output_changes (run_id, version) VALUES (?, 1) "
    "ON CONFLICT (run_id) DO UPDATE SET version = version + 1"
)

SET_EVENT = (
    "INSERT INTO events (run_id, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"
)

KNOWN_WRITE = "SELECT position FROM stream_items WHERE run_id = ? AND key = ? AND write_id = ?"
IS_CLOSED = "SELECT 1 FROM streams_closed WHERE run_id = ? AND key = ?"
NEXT_POSITION = "SELECT coalesce(max(position) + 1, 0) FROM stream_items WHERE run_id = ? AND key = ?"
APPEND = "INSERT INTO stream_items (run_id, key, position, value, write_id) VALUES (?, ?, ?, ?, ?)"

# The items and the closed flag in one statement, so one read snapshot: a reader that sees the
# stream closed has seen every item before it. The flag is the row whose position is NULL. No
# ORDER BY outside: it would sort through a temporary b-tree; ``read`` puts the items in order.
READ = (
    "SELECT * FROM (SELECT position, value FROM stream_items WHERE run_id = ?1 AND key = ?2 "
    "AND position >= ?3 ORDER BY position LIMIT ?4) "
    "UNION ALL SELECT NULL, EXISTS (SELECT 1 FROM streams_closed WHERE run_id = ?1 AND key = ?2)"
)

# Each stream of a run (?1) with its length (offsets are gapless: the last one + 1) and whether it
# is closed, in one statement. The keys with items come from a skip-scan of the primary key (the
# least key after the one before: a seek per stream, not a read of every item); closed streams
# without items from streams_closed.
LIST = (
    "WITH RECURSIVE keys (key) AS (SELECT min(key) FROM stream_items WHERE run_id = ?1 "
    "UNION ALL SELECT (SELECT min(key) FROM stream_items WHERE run_id = ?1 AND key > keys.key) "
    "FROM keys WHERE keys.key IS NOT NULL) "
    "SELECT key, (SELECT max(position) + 1 FROM stream_items WHERE run_id = ?1 AND key = keys.key), "
    "EXISTS (SELECT 1 FROM streams_closed WHERE run_id = ?1 AND key = keys.key) "
    "FROM keys WHERE key IS NOT NULL "
    "UNION ALL SELECT key, 0, 1 FROM streams_closed AS c WHERE run_id = ?1 "
    "AND NOT EXISTS (SELECT 1 FROM stream_items WHERE run_id = ?1 AND key = c.key)"
)

# What the change watcher compares per watched run (a JSON array ?1): its output counter and its
# status (a final status ends readers; a deleted run has neither).
STATES = (
    "SELECT w.value, (SELECT version FROM output_changes WHERE run_id = w.value), "
    "(SELECT status FROM runs WHERE run_id = w.value) FROM json_each(?1) AS w"
)

DELETE = (
    "DELETE FROM events WHERE run_id = ?",
    "DELETE FROM stream_items WHERE run_id = ?",
    "DELETE FROM streams_closed WHERE run_id = ?",
    "DELETE FROM output_changes WHERE run_id = ?",
)

_POSITION = operator.itemgetter(0)

State = tuple[int | None, str | None]
"""A watched run's output counter and status, as the watcher last read them."""


def fence(db: sqlite3.Connection, lease: Lease) -> None:
    """``LeaseLost`` unless ``lease`` holds the run now: in the write transaction, before any change
    (``_connection.commit`` does not roll back a write refused alone)."""
    row = db.execute("SELECT lease_token FROM runs WHERE run_id = ?", (lease.run_id,)).fetchone()
    if row is None or row[0] != lease.token:
        raise LeaseLost.stale(lease.run_id, lease.token, None if row is None else row[0])


def set_event(db: sqlite3.Connection, lease: Lease, key: str, value: str) -> None:
    fence(db, lease)
    db.execute(SET_EVENT, (lease.run_id, key, value))
    db.execute(BUMP, (lease.run_id,))


def append(db: sqlite3.Connection, lease: Lease, key: str, value: str, write_id: str | None) -> int | None:
    """``Store.append_stream``: a known ``write_id`` answers with its offset (closed or not), a
    closed stream takes nothing (``None``), else the next offset, in the transaction's lock."""
    fence(db, lease)
    run_id = lease.run_id
    if write_id is not None:
        known = db.execute(KNOWN_WRITE, (run_id, key, write_id)).fetchone()
        if known is not None:
            return int(known[0])
    if db.execute(IS_CLOSED, (run_id, key)).fetchone() is not None:
        return None
    position: int = db.execute(NEXT_POSITION, (run_id, key)).fetchone()[0]
    db.execute(APPEND, (run_id, key, position, value, write_id))
    db.execute(BUMP, (run_id,))
    return position


def close(db: sqlite3.Connection, lease: Lease, key: str) -> None:
    fence(db, lease)
    closed = db.execute(
        "INSERT INTO streams_closed (run_id, key) VALUES (?, ?) ON CONFLICT DO NOTHING", (lease.run_id, key)
    )
    if closed.rowcount == 1:  # closing twice is closing once: no second wake-up either
        db.execute(BUMP, (lease.run_id,))


def events(db: sqlite3.Connection, run_id: str) -> dict[str, str]:
    return dict(db.execute("SELECT key, value FROM events WHERE run_id = ?", (run_id,)).fetchall())


def read(db: sqlite3.Connection, run_id: str, key: str, offset: int, limit: int) -> StreamItems:
    closed, items = False, []
    for position, value in db.execute(READ, (run_id, key, max(offset, 0), max(limit, 0))):
        if position is None:
            closed = bool(value)
        else:
            items.append((position, value))
    items.sort(key=_POSITION)  # in order already (the index's); a compound select promises none
    return StreamItems(items, closed)


def streams(db: sqlite3.Connection, run_id: str) -> dict[str, tuple[int, bool]]:
    """``Store.list_streams``: each stream's number of items and whether it is closed."""
    return {key: (length, bool(closed)) for key, length, closed in db.execute(LIST, (run_id,))}


def delete(db: sqlite3.Connection, run_id: str) -> None:
    """Delete the run's events and streams, in ``delete_run``'s transaction."""
    for statement in DELETE:
        db.execute(statement, (run_id,))


def states(db: sqlite3.Connection, run_ids: list[str]) -> dict[str, State]:
    """The output counter and status of each run of ``run_ids``, in one statement."""
    rows = db.execute(STATES, (json.dumps(run_ids),)).fetchall()
    return {run_id: (version, status) for run_id, version, status in rows}
