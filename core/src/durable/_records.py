"""The rows a store keeps: runs, steps, signals and leases.

Stores persist these records field by field and never interpret payloads: every
``inputs``, ``result``, ``error`` and ``payload`` is JSON text produced by the core.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Row(Protocol):
    """A database row as drivers return it (a tuple, ``sqlite3.Row``, ``asyncpg.Record``)."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> Any: ...


class RunStatus(StrEnum):
    """Where a run is in its life (``durable._lifecycle`` has the state machine)."""

    PENDING = "pending"
    """Recorded but not yet executed (``start()``, a queued run)."""
    RUNNING = "running"
    """Owned by an executor holding a live lease."""
    WAITING = "waiting"
    """Waiting for a signal or for a durable sleep to elapse."""
    INTERRUPTED = "interrupted"
    """Its executor is gone (crashed, stopped, its caller gave up) or its lease expired, and
    nobody has resumed it yet. Never stored: reported for a stored ``running`` or ``waiting``
    run whose owner holds no live lease (see ``durable._lifecycle.reported``)."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CORRUPT = "corrupt"
    """Its stored record cannot be read (damaged, hand-edited, written by other software). Never
    stored: reported for such a record, whose ``error`` names the bad field (``durable._decode``).
    Workers skip it and executing it raises ``StoreCorrupted``."""

    @property
    def is_final(self) -> bool:
        """Completed and cancelled runs are never executed again unless resumed explicitly."""
        return self in (RunStatus.COMPLETED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class ErrorInfo:
    """A failure as it is stored: exception type, message and formatted traceback."""

    type: str
    message: str
    traceback: str = ""
    attempts: tuple[tuple[str, str], ...] = ()
    """``(type, message)`` of every failed attempt of a step, oldest first."""

    def to_json(self) -> str:
        data: dict[str, object] = {"type": self.type, "message": self.message, "traceback": self.traceback}
        if self.attempts:
            data["attempts"] = [{"type": t, "message": m} for t, m in self.attempts]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ErrorInfo:
        data = json.loads(text)
        attempts = tuple((a["type"], a["message"]) for a in data.get("attempts", ()))
        return cls(data["type"], data["message"], data.get("traceback", ""), attempts)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        import traceback

        return cls(
            type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
        )


@dataclass(frozen=True)
class RunRecord:
    """One workflow run: its identity, inputs, state, outcome and lease."""

    run_id: str
    workflow: str
    status: RunStatus
    inputs: str
    """JSON text of the bound call arguments."""
    inputs_digest: str
    created_at: float
    updated_at: float
    result: str | None = None
    """JSON text of the return value, once completed."""
    error: str | None = None
    """``ErrorInfo`` JSON text, once failed."""
    owner: str | None = None
    """Executor currently holding the lease, if any."""
    lease_token: int = 0
    """Fencing token: increases on every claim; writes carrying an older token are refused."""
    lease_expires_at: float | None = None
    wake_at: float | None = None
    """When a waiting run is due again (durable sleep, or a signal just delivered)."""
    deadline: float | None = None
    """Absolute time after which the run fails with a timeout, across restarts."""
    parent_run_id: str | None = None
    cancel_requested: bool = False
    activity: str | None = None
    """JSON text the core writes saying what the run is doing: the steps in flight (key and
    attempt) while it executes, or what it waits for (a signal's name and timeout, a sleep's wake
    time). Stores keep it verbatim; ``claim_run`` and ``reset_run`` clear it."""
    version: str | None = None
    """``Workflow(version=...)`` of the code that created the run (``None``: none was given, or the
    store predates the field). Written at creation and never changed; ``RunQuery.version`` filters
    by it. The versions that went on to execute the run are in its journal (``durable._versions``)."""
    context: str | None = None
    """JSON text of an object of ``str`` -> ``str`` propagation headers (a W3C ``traceparent``, say)
    that plugins gave when the run was created (``durable_run_context``), so that whichever process
    executes it continues the caller's trace. Written at creation, never changed, not digested."""

    @property
    def error_info(self) -> ErrorInfo | None:
        return ErrorInfo.from_json(self.error) if self.error else None

    def lease_is_live(self, now: float) -> bool:
        return self.owner is not None and (self.lease_expires_at or 0.0) > now


@dataclass(frozen=True, init=False)
class StepRecord:
    """One checkpointed step of a run: a task call, a signal wait or a sleep."""

    run_id: str
    key: str
    """Stable position in the run, e.g. ``fetch``, ``fetch#1``, ``load@item-3``."""
    task: str
    args_digest: str
    status: StepStatus
    result: str | None
    error: str | None
    """``ErrorInfo`` JSON: the final error of a failed step, or for a completed step that needed
    retries, its last failed attempt's; ``ErrorInfo.attempts`` lists every failed attempt."""
    attempts: int
    started_at: float
    finished_at: float
    version: str | None
    """``Workflow(version=...)`` of the code that wrote the checkpoint (``None``: none)."""

    def __init__(
        self,
        run_id: str,
        key: str,
        task: str,
        args_digest: str,
        status: StepStatus,
        result: str | None,
        error: str | None,
        attempts: int,
        started_at: float,
        finished_at: float,
        version: str | None = None,
    ) -> None:
        # Written by hand: every step builds one, and the frozen dataclass's generated
        # __init__ (one object.__setattr__ per field) costs twice this.
        self.__dict__.update(
            run_id=run_id, key=key, task=task, args_digest=args_digest, status=status, result=result,
            error=error, attempts=attempts, started_at=started_at, finished_at=finished_at,
            version=version,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Row) -> StepRecord:
        """A record from a database row in field order, ``status`` as its string value; a row
        without the last field (``version``, ten columns) reads as ``version=None``."""
        if len(row) not in (len(_STEP_FIELDS) - 1, len(_STEP_FIELDS)):
            wanted = f"{len(_STEP_FIELDS) - 1} or {len(_STEP_FIELDS)}"
            raise ValueError(f"a step row has {wanted} columns, got {len(row)}")
        status = _STEP_STATUSES.get(row[4]) or StepStatus(row[4])
        version = row[10] if len(row) == len(_STEP_FIELDS) else None
        return cls(row[0], row[1], row[2], row[3], status, row[5], row[6], row[7], row[8], row[9], version)

    @classmethod
    def from_rows(cls, run_id: str, rows: Iterable[Any]) -> list[StepRecord]:
        """Records of run ``run_id`` from rows of its other ten fields, in field order (or of the
        nine before ``version``, which then reads as ``None``).

        A journal load builds one record per step; this skips ``from_row``'s per-row checks,
        the run id column, which every row would repeat, and ``__init__``'s keyword dict: each
        record gets its attribute dict directly (a tenth less per row, measured).
        """
        statuses, new, set_dict = _STEP_STATUSES, object.__new__, object.__setattr__
        records = []
        for row in rows:
            if len(row) == 10:
                key, task, digest, status, result, error, attempts, started_at, finished_at, version = row
            elif len(row) == 9:
                key, task, digest, status, result, error, attempts, started_at, finished_at = row
                version = None
            else:
                raise ValueError(f"a step row of run {run_id!r} has 9 or 10 values, got {len(row)}")
            record = new(cls)
            set_dict(record, "__dict__", {
                "run_id": run_id, "key": key, "task": task, "args_digest": digest,
                "status": statuses.get(status) or StepStatus(status), "result": result, "error": error,
                "attempts": attempts, "started_at": started_at, "finished_at": finished_at,
                "version": version,
            })  # fmt: skip
            records.append(record)
        return records


_STEP_FIELDS = tuple(StepRecord.__dataclass_fields__)
_STEP_STATUSES = {status.value: status for status in StepStatus}


@dataclass(frozen=True)
class SignalRecord:
    """One delivery of a named signal to a run, in arrival order (``seq``)."""

    run_id: str
    name: str
    delivery_id: str
    payload: str
    seq: int
    sent_at: float


@dataclass(frozen=True)
class Lease:
    """Proof of ownership of a run; every fenced write carries it."""

    run_id: str
    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True)
class RunQuery:
    """Filters for listing runs; results are newest first."""

    statuses: frozenset[RunStatus] | None = None
    workflow: str | None = None
    id_prefix: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    updated_before: float | None = None
    limit: int = 100
    offset: int = 0
    after: tuple[float, str] | None = None
    """Keyset paging: only runs listed after the run with this ``(created_at, run_id)``, the last
    run of the previous page. Listings are ordered by ``created_at`` descending, then ``run_id``
    ascending, so a page costs the same however much history precedes it (``offset`` does not)."""
    version: str | None = None
    """Only runs created by code of this version (``RunRecord.version``, exact match)."""

    def matches(self, run: RunRecord) -> bool:
        """The reference semantics of every filter, for stores that filter in Python."""
        return (
            (self.statuses is None or run.status in self.statuses)
            and (self.workflow is None or run.workflow == self.workflow)
            and (self.id_prefix is None or run.run_id.startswith(self.id_prefix))
            and (self.created_after is None or run.created_at >= self.created_after)
            and (self.created_before is None or run.created_at < self.created_before)
            and (self.updated_before is None or run.updated_at < self.updated_before)
            and (self.after is None or listed_after(run, self.after))
            and (self.version is None or run.version == self.version)
        )


def listed_after(run: RunRecord, after: tuple[float, str]) -> bool:
    """Whether ``run`` comes after the run ``after`` (``(created_at, run_id)``) in listing order."""
    created_at, run_id = after
    return run.created_at < created_at or (run.created_at == created_at and run.run_id > run_id)


# -- queues (``Capability.QUEUES``): kept by the store beside the run, never in ``RunRecord`` -----


@dataclass(frozen=True)
class QueuedRun:
    """A run's place in a named queue, written with the run by ``Store.enqueue_run`` and kept
    until the run is deleted. Times are seconds since the epoch."""

    run_id: str
    queue: str
    priority: int = 0
    """Lower runs first within the queue (any int; ``0`` by default); FIFO within one priority."""
    partition_key: str | None = None
    """The partition ``QueueLimits.partition_concurrency`` counts it in (``None`` is one partition)."""
    not_before: float = 0.0
    """No queue claim takes the run before this time (a ``delay``, or a debounce window's end), on
    the caller's clock (workflow time), as ``wake_at`` is."""
    enqueued_at: float = 0.0
    """When ``start()`` was called (the last call, for a debounced run): FIFO order within a priority."""
    debounce_key: str | None = None
    """Starts with this key on this queue collapse into this run while it has not started."""
    started_at: float | None = None
    """The store's time of the run's first claim through the queue (``None``: never started): the
    starts a rate window counts. Set by the store, never by the caller."""


@dataclass(frozen=True)
class QueueLimits:
    """What a queue claim may not exceed, carried by every ``Store.claim_queued`` call from the
    claiming worker's code (``wf.queue(...)``); ``None`` is no limit."""

    concurrency: int | None = None
    """At most this many runs of the queue with a live lease, across every process."""
    partition_concurrency: int | None = None
    """At most this many runs of one ``partition_key`` with a live lease (``concurrency`` stays
    the total)."""
    rate_limit: tuple[int, float] | None = None
    """``(n, seconds)``: at most ``n`` first claims (``QueuedRun.started_at``) of the queue's runs
    in any window of ``seconds``."""


class Enqueued(StrEnum):
    """What ``Store.enqueue_run`` did."""

    CREATED = "created"
    """The run and its queue entry were inserted."""
    REPLACED = "replaced"
    """A pending, never started run with the same ``debounce_key`` took the new inputs and times."""
    EXISTS = "exists"
    """A run with that id (or, debouncing, of another workflow with that key) exists: nothing written."""


@dataclass(frozen=True)
class QueueStats:
    """One queue's state as ``Store.queue_stats`` counts it (``durable queues`` shows it)."""

    queue: str
    queued: int
    """Runs a claim could take now but for the limits."""
    delayed: int
    """Pending runs whose ``not_before`` is still ahead."""
    running: int
    """Runs holding a live lease (the slots in use)."""
    started_in_window: int | None = None
    """First claims within the rate window asked about (``None`` when none was)."""
