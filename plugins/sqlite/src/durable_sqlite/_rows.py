"""Step and signal rows read back: checked to be what durable writes, else ``StoreCorrupted``
naming the run, the step or delivery, and the field (``durable._decode.decode_failure``)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from durable._decode import decode_failure
from durable.store import SignalRecord, StepRecord, StepStatus
from durable_sqlite._queries import SIGNAL_COLUMNS, STEP_COLUMNS

_FINISHED_AT = operator.itemgetter(8)
_STEP_STATUSES = frozenset(status.value for status in StepStatus)
_STEP_FIELDS = STEP_COLUMNS.split(", ")[1:]


def journal(store: str, run_id: str, rows: list[Any]) -> list[StepRecord]:
    """Run ``run_id``'s steps from ``LOAD_STEPS`` rows, in finish order; ``StoreCorrupted`` naming
    the step and field if a row is not what durable writes (edited by hand, or damaged)."""
    for row in rows:
        key, task, digest, status, result, error, attempts, started_at, finished_at, version = row
        # One pass of type checks (SQLite's column affinity makes REAL columns hold floats and
        # TEXT columns text, unless a row was written with other types on purpose).
        if not (
            type(key) is str and type(task) is str and type(digest) is str and status in _STEP_STATUSES
            and (type(result) is str or (result is None and status != "completed"))
            and (error is None or type(error) is str) and type(attempts) is int
            and type(started_at) is float and type(finished_at) is float
            and (version is None or type(version) is str)
        ):  # fmt: skip
            raise _bad_step(store, run_id, row)
    rows.sort(key=_FINISHED_AT)  # by (finished_at, key): see LOAD_STEPS
    return StepRecord.from_rows(run_id, rows)


def _bad_step(store: str, run_id: str, row: Sequence[Any]) -> Exception:
    values = dict(zip(_STEP_FIELDS, row, strict=True))
    checks: dict[str, Callable[[Any], bool]] = {
        "key": lambda v: type(v) is str,
        "task": lambda v: type(v) is str,
        "args_digest": lambda v: type(v) is str,
        "status": lambda v: v in _STEP_STATUSES,
        "result": lambda v: type(v) is str or (v is None and values["status"] != "completed"),
        "error": lambda v: v is None or type(v) is str,
        "attempts": lambda v: type(v) is int,
        "started_at": lambda v: type(v) is float,
        "finished_at": lambda v: type(v) is float,
        "version": lambda v: v is None or type(v) is str,
    }
    field = next(name for name, ok in checks.items() if not ok(values[name]))
    key = values["key"]
    return decode_failure(
        store,
        run_id,
        f"step {key!r}: {field}",
        ValueError(f"holds {values[field]!r:.60}, not what durable writes"),
    )


def _bad_signal(store: str, run_id: str, row: Sequence[Any]) -> Exception:
    kinds = {"name": str, "delivery_id": str, "payload": str, "seq": int, "sent_at": float}
    values = dict(zip(SIGNAL_COLUMNS.split(", "), row, strict=True))
    field = next(name for name, kind in kinds.items() if type(values[name]) is not kind)
    where = f"signal {values['name']!r} delivery {values['delivery_id']!r}: {field}"
    return decode_failure(
        store, run_id, where, ValueError(f"holds {values[field]!r:.60}, not a {kinds[field].__name__}")
    )


def signals(store: str, run_id: str, rows: list[Any]) -> list[SignalRecord]:
    """Deliveries from ``SIGNAL_COLUMNS`` rows; ``StoreCorrupted`` naming the delivery and field if
    a row is not what durable writes."""
    for row in rows:
        if not (
            type(row[1]) is str and type(row[2]) is str and type(row[3]) is str
            and type(row[4]) is int and type(row[5]) is float
        ):  # fmt: skip
            raise _bad_signal(store, run_id, row)
    return [SignalRecord(*row) for row in rows]
