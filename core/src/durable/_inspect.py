"""Store-level inspection and maintenance shared by the ``durable`` CLI and the run viewer.

Everything here works on any ``Store`` through its public contract, so a third-party
store gets listing, timelines and pruning without extra code. Views are plain
dataclasses whose ``to_json()`` output is what ``--json`` prints and what the web UI
polls, so both front ends show the same facts.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from durable._lifecycle import reported, stored_statuses
from durable._records import ErrorInfo, RunQuery, RunRecord, RunStatus, SignalRecord, StepRecord
from durable.errors import ConfigurationError, UnknownRunError
from durable.store import Store, redact_url

__all__ = [
    "FINISHED",
    "RunSummary",
    "RunTimeline",
    "SignalView",
    "StepView",
    "iter_runs",
    "list_reported",
    "load_timeline",
    "parse_duration",
    "preview",
    "prune",
    "redact_url",
    "resume_run",
]

FINISHED: frozenset[RunStatus] = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
"""Statuses a run never leaves by itself: the only ones ``prune`` deletes."""

PAGE_SIZE = 500

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_MAX_SECONDS = 100 * 365 * 86400.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"1h"``, ``"90m"``, ``"1h30m"``, ``"45s"``, ``"2w"``, or plain seconds."""
    cleaned = "".join(text.lower().split())
    try:
        seconds = float(cleaned)
    except ValueError:
        if not _DURATIONS.fullmatch(cleaned):
            raise ConfigurationError(
                f"invalid duration {text!r}: use a number with a unit s, m, h, d or w (e.g. 30m, 1h, 30d)"
            ) from None
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(cleaned))
    if not 0 <= seconds <= _MAX_SECONDS:
        raise ConfigurationError(f"invalid duration {text!r}: must be between 0 and 100 years")
    return timedelta(seconds=seconds)


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # a store returning non-JSON is shown as is rather than hidden


def preview(text: str | None, width: int = 60) -> str:
    """A one-line, bounded rendering of stored JSON text for tables."""
    if text is None:
        return ""
    try:
        compact = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        compact = text
    compact = " ".join(compact.split())
    return compact if len(compact) <= width else compact[: width - 1] + "…"


def _error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "type": error.type,
        "message": error.message,
        "traceback": error.traceback,
        "attempts": [{"type": t, "message": m} for t, m in error.attempts],
    }


def _error_of(text: str | None) -> ErrorInfo | None:
    if not text:
        return None
    try:
        return ErrorInfo.from_json(text)
    except (ValueError, KeyError, TypeError):
        return ErrorInfo("unknown", text)


@dataclass(frozen=True)
class RunSummary:
    """One row of a run listing."""

    run_id: str
    workflow: str
    status: str
    created_at: float
    updated_at: float
    error: ErrorInfo | None
    cancel_requested: bool
    owner: str | None
    parent_run_id: str | None

    @classmethod
    def of(cls, run: RunRecord) -> RunSummary:
        return cls(
            run_id=run.run_id,
            workflow=run.workflow,
            status=str(run.status),
            created_at=run.created_at,
            updated_at=run.updated_at,
            error=_error_of(run.error),
            cancel_requested=run.cancel_requested,
            owner=run.owner,
            parent_run_id=run.parent_run_id,
        )

    def to_json(self) -> dict[str, Any]:
        error = None if self.error is None else {"type": self.error.type, "message": self.error.message}
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "error": error,
            "cancel_requested": self.cancel_requested,
            "owner": self.owner,
            "parent_run_id": self.parent_run_id,
        }


_SYSTEM_KINDS = {"durable:signal": "signal", "durable:sleep": "sleep", "durable:child": "child"}


@dataclass(frozen=True)
class StepView:
    """One bar of a run's timeline."""

    key: str
    task: str
    kind: str
    """``task``, ``signal`` (a wait for a delivery), ``sleep`` or ``child`` (a child run)."""
    status: str
    attempts: int
    started_at: float
    finished_at: float
    result: Any
    result_preview: str
    error: ErrorInfo | None
    until: float | None = None
    """For a sleep: when it ends (its bar spans the wait, not the instant it was recorded)."""

    @property
    def ends_at(self) -> float:
        return max(self.finished_at, self.until or 0.0)

    @property
    def duration(self) -> float:
        return max(0.0, self.ends_at - self.started_at)

    @property
    def failed_attempts(self) -> int:
        return self.attempts if self.status == "failed" else max(0, self.attempts - 1)

    @classmethod
    def of(cls, step: StepRecord) -> StepView:
        kind = _SYSTEM_KINDS.get(step.task, "task")
        result = _decode(step.result)
        until = float(result) if kind == "sleep" and isinstance(result, (int, float)) else None
        return cls(
            key=step.key,
            task=step.task,
            kind=kind,
            status=str(step.status),
            attempts=step.attempts,
            started_at=step.started_at,
            finished_at=step.finished_at,
            result=result,
            result_preview=preview(step.result),
            error=_error_of(step.error),
            until=until,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "task": self.task,
            "kind": self.kind,
            "status": self.status,
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "ends_at": self.ends_at,
            "until": self.until,
            "result": self.result,
            "result_preview": self.result_preview,
            "error": _error_json(self.error),
        }


@dataclass(frozen=True)
class SignalView:
    name: str
    delivery_id: str
    seq: int
    sent_at: float
    payload: Any
    payload_preview: str

    @classmethod
    def of(cls, signal: SignalRecord) -> SignalView:
        return cls(
            name=signal.name,
            delivery_id=signal.delivery_id,
            seq=signal.seq,
            sent_at=signal.sent_at,
            payload=_decode(signal.payload),
            payload_preview=preview(signal.payload),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "delivery_id": self.delivery_id,
            "seq": self.seq,
            "sent_at": self.sent_at,
            "payload": self.payload,
            "payload_preview": self.payload_preview,
        }


@dataclass(frozen=True)
class RunTimeline:
    """Everything known about one run, steps in the order they started."""

    run: RunSummary
    inputs: Any
    result: Any
    has_result: bool
    lease_expires_at: float | None
    wake_at: float | None
    deadline: float | None
    steps: list[StepView] = field(default_factory=list)
    signals: list[SignalView] = field(default_factory=list)
    children: list[RunSummary] = field(default_factory=list)
    observed_at: float = 0.0

    @property
    def start(self) -> float:
        return min([self.run.created_at, *(s.started_at for s in self.steps)])

    @property
    def end(self) -> float:
        """Where the picture stops: the last thing that happened, or now for a live run."""
        ends = [s.ends_at for s in self.steps]
        last = self.run.updated_at if RunStatus(self.run.status) in FINISHED else self.observed_at
        return max([last, *ends])

    def to_json(self) -> dict[str, Any]:
        return {
            **self.run.to_json(),
            "error": _error_json(self.run.error),
            "inputs": self.inputs,
            "result": self.result if self.has_result else None,
            "has_result": self.has_result,
            "lease_expires_at": self.lease_expires_at,
            "wake_at": self.wake_at,
            "deadline": self.deadline,
            "start": self.start,
            "end": self.end,
            "observed_at": self.observed_at,
            "steps": [s.to_json() for s in self.steps],
            "signals": [s.to_json() for s in self.signals],
            "children": [c.to_json() for c in self.children],
        }


async def load_timeline(store: Store, run_id: str) -> RunTimeline:
    """The run with its steps, signals and child runs; ``UnknownRunError`` if there is none."""
    run = await store.get_run(run_id)
    if run is None:
        raise UnknownRunError(f"no run {run_id!r} in {store!r}")
    steps = sorted(await store.load_steps(run_id), key=lambda s: (s.started_at, s.finished_at, s.key))
    signals = await store.list_signals(run_id)
    children = [
        RunSummary.of(child)
        async for child in iter_runs(store, RunQuery(id_prefix=run_id + "/"))
        if child.parent_run_id == run_id
    ]
    return RunTimeline(
        run=RunSummary.of(run),
        inputs=_decode(run.inputs),
        result=_decode(run.result),
        has_result=run.result is not None,
        lease_expires_at=run.lease_expires_at,
        wake_at=run.wake_at,
        deadline=run.deadline,
        steps=[StepView.of(s) for s in steps],
        signals=[SignalView.of(s) for s in signals],
        children=sorted(children, key=lambda c: c.created_at),
        observed_at=time.time(),
    )


async def iter_runs(
    store: Store,
    query: RunQuery,
    *,
    limit: int | None = None,
    on_page: Callable[[int], None] | None = None,
) -> AsyncIterator[RunRecord]:
    """Runs matching ``query`` as users see them (``_lifecycle.reported``: ``interrupted`` where
    the executor is gone, and so filtered), newest first; ``query``'s own ``limit`` and
    ``offset`` are ignored in favour of ``limit`` and paging. ``on_page`` receives the running
    count of stored runs read after each page."""
    wanted = query.statuses
    stored = None if wanted is None else stored_statuses(wanted)
    exact = _reads_exactly(wanted)
    seen = yielded = 0
    offset = query.offset
    now = time.time()
    while limit is None or yielded < limit:
        size = PAGE_SIZE if limit is None or not exact else min(PAGE_SIZE, limit - yielded)
        page = await store.list_runs(
            RunQuery(
                statuses=stored,
                workflow=query.workflow,
                id_prefix=query.id_prefix,
                created_after=query.created_after,
                created_before=query.created_before,
                updated_before=query.updated_before,
                limit=size,
                offset=offset,
            )
        )
        for run in page:
            run = reported(run, now)
            if wanted is None or run.status in wanted:
                yield run
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
        seen += len(page)
        offset += len(page)
        if on_page is not None:
            on_page(seen)
        if len(page) < size:
            return


_REPORTED_AS = frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.INTERRUPTED})


def _reads_exactly(wanted: frozenset[RunStatus] | None) -> bool:
    """Whether every stored run matching the stored-status filter is wanted as reported: only a
    filter naming some but not all of running, waiting and interrupted drops rows after reading."""
    return wanted is None or not wanted & _REPORTED_AS or wanted >= _REPORTED_AS


async def list_reported(store: Store, query: RunQuery) -> list[RunRecord]:
    """``store.list_runs(query)`` with statuses as users see them (``iter_runs``)."""
    if _reads_exactly(query.statuses):
        stored = None if query.statuses is None else stored_statuses(query.statuses)
        now = time.time()
        return [reported(run, now) for run in await store.list_runs(replace(query, statuses=stored))]
    found: list[RunRecord] = []
    skip = query.offset
    async for run in iter_runs(store, replace(query, offset=0)):
        if skip:
            skip -= 1
            continue
        found.append(run)
        if len(found) >= query.limit:
            break
    return found


async def prune(
    store: Store,
    cutoff: float,
    *,
    statuses: Iterable[RunStatus] = FINISHED,
    progress: Callable[[int, int], None] | None = None,
    dry_run: bool = False,
) -> int:
    """Delete finished runs (with their steps and signals) last updated before ``cutoff``
    (epoch seconds). Returns how many were deleted (with ``dry_run``, how many would be);
    ``progress(done, total)`` follows along.

    Runs that are pending, running or waiting are never deleted: they may still execute.
    """
    wanted = frozenset(RunStatus(s) for s in statuses)
    unfinished = wanted - FINISHED
    if unfinished:
        raise ConfigurationError(
            f"prune deletes only finished runs (completed, failed, cancelled), not "
            f"{', '.join(sorted(unfinished))}"
        )
    if not wanted:
        return 0
    # Collect ids first: deleting while paging by offset would skip runs.
    query = RunQuery(statuses=wanted, updated_before=cutoff)
    candidates = list(dict.fromkeys([run.run_id async for run in iter_runs(store, query)]))
    total, deleted = len(candidates), 0
    if dry_run:
        return total
    if progress is not None:
        progress(0, total)
    for done, run_id in enumerate(candidates, start=1):
        # Re-read: a run resumed since it was listed is live again and must stay.
        current = await store.get_run(run_id)
        if current is not None and current.status in wanted and current.updated_at < cutoff:
            deleted += await store.delete_run(run_id)
        if progress is not None:
            progress(done, total)
    return deleted


async def resume_run(store: Store, run_id: str) -> tuple[RunRecord, bool]:
    """Make a failed or cancelled run pending again, so a worker (or the next call of its
    workflow) resumes it from its journal. Returns the run and whether it was reset; runs
    in other statuses are left alone."""
    run = await store.get_run(run_id)
    if run is None:
        raise UnknownRunError(f"cannot resume: no run {run_id!r}")
    if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        return run, False
    reset = await store.reset_run(run_id)
    if reset is None:
        raise UnknownRunError(f"cannot resume: run {run_id!r} was deleted")
    return reset, True
