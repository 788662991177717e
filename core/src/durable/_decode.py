"""Reading run records back from a store: the one place that checks every stored field.

Rows and hashes may have been edited by hand, damaged, or written by other software. A run
record whose fields cannot be read is never raised out of a listing or a poll: it reads as a
*corrupt* run (``RunStatus.CORRUPT``, never stored) whose ``error`` names the bad field, so one
bad record never stops a worker, ``durable runs list`` or the viewer. Each one is reported once
per process at WARNING. Executing or resuming a corrupt run raises ``StoreCorrupted`` naming
the store, the run and the field (``corruption``).

Stores call ``run_from_row`` (SQL rows, typed columns) or ``run_from_text`` (hashes of strings)
for every run they return.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from durable._records import ErrorInfo, RunRecord, RunStatus
from durable.errors import StoreCorrupted

__all__ = ["LEGACY_RUN_FIELDS", "RUN_FIELDS", "corruption", "decode_failure", "run_from_row", "run_from_text"]

log = logging.getLogger("durable.store")

RUN_FIELDS: tuple[str, ...] = tuple(RunRecord.__dataclass_fields__)
"""A run row's columns, in the order ``run_from_row`` reads them."""
LEGACY_RUN_FIELDS: tuple[str, ...] = RUN_FIELDS[: RUN_FIELDS.index("version")]
"""The columns of a run row before ``version`` and ``context`` were stored: a store that selects
only these reads them as ``None``."""

_STORED = {s.value: s for s in RunStatus if s not in (RunStatus.INTERRUPTED, RunStatus.CORRUPT)}
_CORRUPT_TYPE = f"{StoreCorrupted.__module__}.{StoreCorrupted.__qualname__}"
_reported: set[tuple[str, str, str]] = set()


class _Bad(Exception):
    """A field's value cannot be read (``str(self)`` says why)."""


# -- the fields' kinds: each reads a column value (typed) or a hash value (text) -------------


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _Bad(f"holds {_shown(value)}, not text")
    return value


def _real(value: Any) -> float:
    if type(value) is float or type(value) is int:
        number = float(value)
    elif type(value) is str:
        try:
            number = float(value)
        except ValueError:
            raise _Bad(f"holds {_shown(value)}, not a number") from None
    else:
        raise _Bad(f"holds {_shown(value)}, not a number")
    if not math.isfinite(number):
        raise _Bad(f"holds {_shown(value)}, not a finite time")
    return number


def _int(value: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is str and value.lstrip("-").isdigit() and len(value) < 20:
        return int(value)
    raise _Bad(f"holds {_shown(value)}, not an integer")


def _status(value: Any) -> RunStatus:
    status = _STORED.get(value) if type(value) is str else None
    if status is None:
        raise _Bad(f"holds {_shown(value)}, which is not a stored run status")
    return status


def _flag(value: Any) -> bool:
    if value in (0, 1, "0", "1") and type(value) is not float:
        return value in (1, "1")
    raise _Bad(f"holds {_shown(value)}, not 0 or 1")


def _error(value: Any) -> str:
    text = _text(value)
    try:
        ErrorInfo.from_json(text)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise _Bad(f"holds {_shown(value)}, not a stored error") from None
    return text


def _optional(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else read(value)


_KINDS: tuple[Callable[[Any], Any], ...] = (
    _text, _text, _status, _text, _text, _real, _real,           # run_id .. updated_at
    _optional(_text), _optional(_error), _optional(_text),       # result, error, owner
    _int, _optional(_real), _optional(_real), _optional(_real),  # lease_token .. deadline
    _optional(_text), _flag, _optional(_text),                   # parent_run_id, cancel, activity
    _optional(_text), _optional(_text),                          # version, context
)  # fmt: skip
_REQUIRED = frozenset(RUN_FIELDS[:7]) | {"lease_token"}


def run_from_row(store: str, row: Sequence[Any]) -> RunRecord:
    """The run in ``row`` (columns in ``RUN_FIELDS`` order, or ``LEGACY_RUN_FIELDS``), or a corrupt
    run naming the bad field."""
    if len(row) == 19:
        # The common case, checked inline: a listing decodes every row it shows, and one call
        # per field cost more than building the record. Anything unusual takes the full path.
        (run_id, workflow, status, inputs, digest, created, updated, result, error, owner, token,
         expires, wake_at, deadline, parent, cancel, activity, version, context) = row  # fmt: skip
        stored = _STORED.get(status) if type(status) is str else None
        if (
            stored is not None
            and type(run_id) is str and type(workflow) is str and type(inputs) is str and type(digest) is str
            and type(created) is float and created - created == 0.0  # finite: inf - inf, nan are not 0
            and type(updated) is float and updated - updated == 0.0
            and (result is None or type(result) is str)
            and (error is None or (type(error) is str and error.startswith('{"type": ')))
            and (owner is None or type(owner) is str)
            and type(token) is int
            and (expires is None or (type(expires) is float and expires - expires == 0.0))
            and (wake_at is None or (type(wake_at) is float and wake_at - wake_at == 0.0))
            and (deadline is None or (type(deadline) is float and deadline - deadline == 0.0))
            and (parent is None or type(parent) is str)
            and (cancel is False or cancel is True or cancel == 0 or cancel == 1)
            and type(cancel) is not float
            and (activity is None or type(activity) is str)
            and (version is None or type(version) is str)
            and (context is None or type(context) is str)
        ):  # fmt: skip
            return RunRecord(
                run_id, workflow, stored, inputs, digest, created, updated, result, error, owner, token,
                expires, wake_at, deadline, parent, cancel == 1, activity, version, context,
            )  # fmt: skip
    if len(row) not in (len(RUN_FIELDS), len(LEGACY_RUN_FIELDS)):
        why = f"has {len(row)} columns, not {len(RUN_FIELDS)}"
        return _corrupt(store, row[0] if row else None, {}, "(row)", why)
    fields = RUN_FIELDS[: len(row)]
    values: list[Any] = []
    for name, read, value in zip(fields, _KINDS, row, strict=False):
        try:
            values.append(read(value))
        except _Bad as bad:
            return _corrupt(store, row[0], dict(zip(fields, row, strict=True)), name, str(bad))
    return RunRecord(*values)


def run_from_text(store: str, fields: Mapping[str, str], run_id: str | None = None) -> RunRecord:
    """The run in a hash of text fields (absent optional fields are ``None``; ``cancel_requested``
    absent is false), or a corrupt run naming the bad field."""
    values: list[Any] = []
    for name, read in zip(RUN_FIELDS, _KINDS, strict=True):
        value = fields.get(name)
        try:
            if value is None and name in _REQUIRED:
                raise _Bad("is missing")
            values.append(False if value is None and name == "cancel_requested" else read(value))
        except _Bad as bad:
            return _corrupt(store, fields.get("run_id", run_id), fields, name, str(bad))
    return RunRecord(*values)


def decode_failure(store: str, run_id: str, field: str, exc: BaseException) -> StoreCorrupted:
    """The error for a stored value of run ``run_id`` the core could not decode (its inputs, a
    step's result): names the store, the run and the field."""
    error = StoreCorrupted(
        f"store {store}: run {run_id!r}: field {field!r} cannot be read ({type(exc).__name__}: {exc}); "
        "the record was damaged or written by other software",
        run_id=run_id,
    )
    error.store, error.field = store, field
    return error


def corruption(run: RunRecord, store: str = "") -> StoreCorrupted:
    """The error to raise for a corrupt run (``run.status is RunStatus.CORRUPT``)."""
    data = json.loads(run.error or "{}")
    error = StoreCorrupted(data.get("message", f"run {run.run_id!r} is corrupt"), run_id=run.run_id)
    error.store, error.field = data.get("store", store), data.get("field")
    return error


def _corrupt(store: str, run_id: Any, fields: Mapping[str, Any], field: str, why: str) -> RunRecord:
    shown_id = run_id if type(run_id) is str else repr(run_id)
    message = (
        f"store {store}: run {shown_id!r} is corrupt: field {field!r} {why}; "
        "it is skipped by workers and listings (`durable runs check` lists such runs)"
    )
    if (store, shown_id, field) not in _reported:
        _reported.add((store, shown_id, field))
        log.warning("%s", message)
    error = {"type": _CORRUPT_TYPE, "message": message, "traceback": "", "store": store, "field": field}

    def readable(name: str, read: Callable[[Any], Any], default: Any) -> Any:
        try:
            return read(fields.get(name))
        except _Bad:
            return default

    return RunRecord(
        run_id=shown_id,
        workflow=readable("workflow", _text, ""),
        status=RunStatus.CORRUPT,
        inputs="null",
        inputs_digest="",
        created_at=readable("created_at", _real, 0.0),
        updated_at=readable("updated_at", _real, 0.0),
        error=json.dumps(error),
        lease_token=readable("lease_token", _int, 0),
        parent_run_id=readable("parent_run_id", _text, None),
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
