"""Store-level inspection and maintenance shared by the ``durable`` CLI and the run viewer.

Everything here works on any ``Store`` through its public contract, so a third-party
store gets listing, timelines and pruning without extra code. Views are plain
dataclasses whose ``to_json()`` output is what ``--json`` prints and what the web UI
polls, so both front ends show the same facts.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from durable._lifecycle import activity_of, reported, stored_statuses
from durable._records import (
    ErrorInfo,
    QueuedRun,
    RunQuery,
    RunRecord,
    RunStatus,
    SignalRecord,
    StepRecord,
    StepStatus,
    listed_after,
)
from durable.errors import ConfigurationError, UnknownRunError
from durable.store import Capability, Store, redact_url

if TYPE_CHECKING:
    from durable._outputs_view import OutputsView

__all__ = [
    "FINISHED",
    "InFlight",
    "RunSummary",
    "RunTimeline",
    "SignalView",
    "StepView",
    "WaitingFor",
    "iso_time",
    "iter_runs",
    "json_text",
    "list_reported",
    "load_timeline",
    "parse_duration",
    "preview",
    "prune",
    "redact_url",
    "resume_run",
    "summarize",
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


DISPLAY_LIMIT = 64 * 1024
"""Stored values longer than this (characters of JSON text) are not decoded for display
(``load_timeline(..., max_value=DISPLAY_LIMIT)``): their preview is cut from the stored text and
says their size, so showing a run with a 100 MB value costs no more than a small one."""


def _decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # a store returning non-JSON is shown as is rather than hidden


def _size(text: str) -> str:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1_000_000:.1f} MB"


def _value(text: str | None, max_value: int | None) -> tuple[Any, bool]:
    """The decoded value of stored text, and whether it was left out (``None``) for being longer
    than ``max_value``."""
    if text is not None and max_value is not None and len(text) > max_value:
        return None, True
    return _decode(text), False


def preview(text: str | None, width: int = 60) -> str:
    """A one-line, bounded rendering of stored JSON text for tables. A value longer than
    ``DISPLAY_LIMIT`` is not decoded: its stored text is cut, and its size follows (``"aaa…
    (100.0 MB)"``)."""
    if text is None:
        return ""
    if len(text) > DISPLAY_LIMIT:
        size = f" ({_size(text)})"
        room = max(width - len(size), 8)
        return " ".join(text[: room * 2].split())[: room - 1] + "…" + size
    try:
        compact = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    except ValueError:
        compact = text
    compact = " ".join(compact.split())
    return compact if len(compact) <= width else compact[: width - 1] + "…"


def _finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return "NaN" if data != data else ("Infinity" if data > 0 else "-Infinity")
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def json_text(data: Any, *, indent: int | None = None) -> str:
    """``data`` (views' ``to_json()``) as strict JSON, which every parser reads: NaN, Infinity
    and -Infinity, legal in stored values, are written as the strings ``"NaN"``, ``"Infinity"``
    and ``"-Infinity"``. What the CLI's ``--json`` prints and the viewer's endpoints answer."""
    try:
        return json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a non-finite float somewhere: the rare case pays for a second pass
        return json.dumps(_finite(data), indent=indent, ensure_ascii=False, allow_nan=False)


def iso_time(ts: float) -> str:
    """Epoch seconds as an ISO 8601 time in UTC: ``2026-12-03T09:16:39Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
class InFlight:
    """What an interrupted run was executing when its executor went away (or what a running one
    is executing): the steps its activity recorded in flight, checked against its journal."""

    steps: tuple[tuple[str, int], ...]
    """``(key, attempt)`` of each step recorded in flight that has no completed checkpoint. Empty
    when that is unknown: nothing was recorded (the run stopped before its first lease renewal,
    or its store keeps no activity), or every recorded step was checkpointed since."""
    after: str | None
    """Key of the run's last completed checkpoint (by finish time); ``None`` before the first."""

    @property
    def known(self) -> bool:
        return bool(self.steps)

    @classmethod
    def of(cls, activity: dict[str, Any] | None, journal: Iterable[StepRecord]) -> InFlight:
        done: set[str] = set()
        last: StepRecord | None = None
        for step in journal:
            if step.status is StepStatus.COMPLETED:
                done.add(step.key)
                if last is None or step.finished_at >= last.finished_at:
                    last = step
        recorded = activity.get("steps") if activity is not None else None
        steps: list[tuple[str, int]] = []
        for item in recorded if isinstance(recorded, list) else ():
            if not isinstance(item, dict):
                continue
            key, attempt = item.get("key"), item.get("attempt")
            if isinstance(key, str) and isinstance(attempt, int) and key not in done:
                steps.append((key, attempt))
        return cls(tuple(steps), None if last is None else last.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [{"key": key, "attempt": attempt} for key, attempt in self.steps],
            "known": self.known,
            "after": self.after,
        }


_SIGNAL_BASE = "durable:signal@"


def _signal_of_key(key: str) -> str | None:
    """The signal name a signal-wait step key waits for (``durable:signal@approve#1``)."""
    base = key.rsplit("/", 1)[-1].split("#", 1)[0]
    return unquote(base[len(_SIGNAL_BASE) :]) if base.startswith(_SIGNAL_BASE) else None


@dataclass(frozen=True)
class WaitingFor:
    """What a waiting run waits for: a signal, or the end of a durable sleep."""

    kind: str
    """``signal`` or ``sleep``."""
    signal: str | None = None
    """The signal's name (a signal wait)."""
    timeout: float | None = None
    """A signal wait's timeout in seconds; ``None`` when it has none or none was recorded."""
    delivered: bool = False
    """A signal wait whose signal has been delivered: the run is due to resume."""
    until: float | None = None
    """When a sleep ends (epoch seconds)."""

    @classmethod
    def of(
        cls, run: RunRecord, activity: dict[str, Any] | None, journal: Iterable[StepRecord] | None = None
    ) -> WaitingFor | None:
        """From the run's activity; for a store that records none, a sleep is still found from
        its checkpointed wake time when ``journal`` is given. ``None`` when nothing says."""
        if activity is not None:
            name = activity.get("signal")
            if isinstance(name, str):
                timeout = _number(activity.get("timeout"))
                return cls("signal", signal=name, timeout=timeout, delivered=run.wake_at is not None)
            until = _number(activity.get("sleep_until"))
            if until is not None:
                return cls("sleep", until=until)
            steps = activity.get("steps")
            for item in steps if isinstance(steps, list) else ():
                # A signal wait in its process, whose lease renewals recorded its step in flight.
                key = item.get("key") if isinstance(item, dict) else None
                name = _signal_of_key(key) if isinstance(key, str) else None
                if name is not None:
                    return cls("signal", signal=name, delivered=run.wake_at is not None)
        if journal is not None and run.wake_at is not None:
            for step in journal:
                if step.task == "durable:sleep" and _number(_decode(step.result)) == run.wake_at:
                    return cls("sleep", until=run.wake_at)
        return None

    def to_json(self) -> dict[str, Any]:
        if self.kind == "sleep" and self.until is not None:
            return {"kind": "sleep", "until": self.until, "until_iso": iso_time(self.until)}
        return {
            "kind": self.kind,
            "signal": self.signal,
            "timeout": self.timeout,
            "delivered": self.delivered,
        }


def _ended_at(run: RunRecord, now: float) -> float | None:
    """When a run stopped: a finished run at its last update; an interrupted one at its last update
    or, if later, when its owner's lease ended (a killed owner's lease runs out, unrenewed).
    ``None`` for a run still live (pending, running, waiting)."""
    if run.status in FINISHED:
        return run.updated_at
    if run.status is RunStatus.INTERRUPTED:
        if run.lease_expires_at is None:
            return run.updated_at
        return max(run.updated_at, min(run.lease_expires_at, now))
    return None


@dataclass(frozen=True)
class RunSummary:
    """One row of a run listing (statuses as ``_lifecycle.reported`` gives them)."""

    run_id: str
    workflow: str
    status: str
    created_at: float
    updated_at: float
    error: ErrorInfo | None
    cancel_requested: bool
    owner: str | None
    parent_run_id: str | None
    last_owner: str | None = None
    """For an interrupted run: the executor that owned it last (gone, or its lease ran out)."""
    in_flight: InFlight | None = None
    """For an interrupted run: the step it was executing when its executor went away (or that it
    is unknown, after its last checkpoint); ``None`` if it was waiting (see ``waiting_for``).
    For a running run, in a timeline only: what it executes, as of its last lease renewal."""
    waiting_for: WaitingFor | None = None
    """For a waiting run, and an interrupted one that was waiting: the signal or the sleep."""
    ended_at: float | None = None
    """When it stopped: a finished run's last update, an interrupted run's last sign of its
    executor (its duration ends there, it does not keep growing); ``None`` while it is live."""
    queued: QueuedRun | None = None
    """Its queue entry (queue, priority, partition, not-before time), for a queued run."""
    version: str | None = None
    """``Workflow(version=...)`` of the code that created it (``RunRecord.version``)."""

    @classmethod
    def of(
        cls,
        run: RunRecord,
        journal: Iterable[StepRecord] | None = None,
        now: float | None = None,
        queued: QueuedRun | None = None,
    ) -> RunSummary:
        """The row of ``run``. ``journal``, its checkpoints, is needed to tell an interrupted run's
        step in flight (``summarize`` reads it): without it ``in_flight`` is ``None``."""
        now = time.time() if now is None else now
        run = reported(run, now)
        steps = list(journal) if journal is not None else None
        activity = activity_of(run)
        in_flight = waiting_for = None
        last_owner = None
        if run.status is RunStatus.INTERRUPTED:
            last_owner = run.owner
            waiting = activity is not None and ("signal" in activity or "sleep_until" in activity)
            if waiting:
                waiting_for = WaitingFor.of(run, activity, steps)
            else:
                in_flight = None if steps is None else InFlight.of(activity, steps)
                waiting_for = WaitingFor.of(run, activity)  # a signal step recorded in flight
        elif run.status is RunStatus.WAITING:
            waiting_for = WaitingFor.of(run, activity, steps)
        elif run.status is RunStatus.RUNNING and steps is not None:
            in_flight = InFlight.of(activity, steps)
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
            last_owner=last_owner,
            in_flight=in_flight,
            waiting_for=waiting_for,
            ended_at=_ended_at(run, now),
            queued=queued,
            version=run.version,
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
            "last_owner": self.last_owner,
            "in_flight": None if self.in_flight is None else self.in_flight.to_json(),
            "waiting_for": None if self.waiting_for is None else self.waiting_for.to_json(),
            "ended_at": self.ended_at,
            "queue": None if self.queued is None else _queued_json(self.queued),
            "version": self.version,
        }


async def summarize(store: Store, runs: Iterable[RunRecord], now: float | None = None) -> list[RunSummary]:
    """``RunSummary.of`` each run, reading the journal of each interrupted one (to tell its step in
    flight) and, on a store with queues, the queue entry of each unfinished one; other runs cost
    no read."""
    now = time.time() if now is None else now
    found = []
    for run in runs:
        run = reported(run, now)
        journal = await store.load_steps(run.run_id) if run.status is RunStatus.INTERRUPTED else None
        queued = await queued_of(store, run) if run.status in _UNFINISHED else None
        found.append(RunSummary.of(run, journal, now, queued))
    return found


_UNFINISHED = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING, RunStatus.INTERRUPTED})


async def queued_of(store: Store, run: RunRecord) -> QueuedRun | None:
    """``run``'s queue entry, where the store keeps queues."""
    if Capability.QUEUES not in store.capabilities:
        return None
    return await store.get_queued(run.run_id)


def _queued_json(entry: QueuedRun) -> dict[str, Any]:
    return {
        "queue": entry.queue,
        "priority": entry.priority,
        "partition_key": entry.partition_key,
        "not_before": entry.not_before,
        "enqueued_at": entry.enqueued_at,
        "debounce_key": entry.debounce_key,
        "started_at": entry.started_at,
    }


_SYSTEM_KINDS = {
    "durable:signal": "signal", "durable:sleep": "sleep", "durable:child": "child",
    "durable:patch": "patch", "durable:fork": "fork", "durable:version": "version",
    "durable:event": "event", "durable:stream": "stream", "durable:close": "close",
}  # fmt: skip


@dataclass(frozen=True)
class StepView:
    """One bar of a run's timeline."""

    key: str
    task: str
    kind: str
    """``task``, ``signal`` (a wait for a delivery), ``sleep``, ``child`` (a child run), ``patch``,
    ``fork``, ``version``, or ``event``, ``stream``, ``close`` (a write from the workflow body)."""
    status: str
    """The checkpoint's status (``completed``, ``failed``); a sleep whose end is still to come is
    ``sleeping`` (its checkpoint records the wake time when the sleep begins)."""
    attempts: int
    started_at: float
    finished_at: float
    result: Any
    """The step's decoded result; ``None`` for a sleep, whose wake time is ``until``."""
    result_preview: str
    """One line of the result; a sleep's says ``until`` its end as an ISO time."""
    error: ErrorInfo | None
    until: float | None = None
    """For a sleep: when it ends (its bar spans the wait, not the instant it was recorded)."""
    omitted: bool = False
    """The result was left out (``None``) for its size; ``result_preview`` says how large it is."""
    version: str | None = None
    """``Workflow(version=...)`` of the code that wrote the checkpoint (``StepRecord.version``)."""

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
    def of(cls, step: StepRecord, now: float | None = None, max_value: int | None = None) -> StepView:
        """The bar of ``step`` as seen at ``now`` (default: now); a result whose stored text is
        longer than ``max_value`` is left out (``omitted``)."""
        kind = _SYSTEM_KINDS.get(step.task, "task")
        result, omitted = _value(step.result, max_value)
        status, result_preview = str(step.status), preview(step.result)
        until = _number(result) if kind == "sleep" else None
        if until is not None:
            result, result_preview = None, f"until {iso_time(until)}"
            if step.status is StepStatus.COMPLETED and until > (time.time() if now is None else now):
                status = "sleeping"
        return cls(
            key=step.key,
            task=step.task,
            kind=kind,
            status=status,
            attempts=step.attempts,
            started_at=step.started_at,
            finished_at=step.finished_at,
            result=result,
            result_preview=result_preview,
            error=_error_of(step.error),
            until=until,
            omitted=omitted,
            version=step.version,
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
            "until_iso": None if self.until is None else iso_time(self.until),
            "result": self.result,
            "result_preview": self.result_preview,
            "error": _error_json(self.error),
            "version": self.version,
        }


@dataclass(frozen=True)
class SignalView:
    name: str
    delivery_id: str
    seq: int
    sent_at: float
    payload: Any
    payload_preview: str
    omitted: bool = False
    """The payload was left out (``None``) for its size; ``payload_preview`` says how large it is."""

    @classmethod
    def of(cls, signal: SignalRecord, max_value: int | None = None) -> SignalView:
        payload, omitted = _value(signal.payload, max_value)
        return cls(
            name=signal.name,
            delivery_id=signal.delivery_id,
            seq=signal.seq,
            sent_at=signal.sent_at,
            payload=payload,
            payload_preview=preview(signal.payload),
            omitted=omitted,
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
    inputs_text: str | None = None
    """The stored JSON text of the inputs, for previews (``preview``)."""
    result_text: str | None = None
    omitted: tuple[str, ...] = ()
    """Which of ``inputs`` and ``result`` were left out (``None``) for their size."""
    outputs: OutputsView | None = None
    """Its events and streams (``durable._outputs_view``); ``None`` on a store without them."""

    def omitted_values(self) -> list[str]:
        """Where the values left out for their size are: ``inputs``, ``result``,
        ``steps[i].result``, ``signals[i].payload`` (the ``to_json()`` field ``omitted``)."""
        return [
            *self.omitted,
            *(f"steps[{i}].result" for i, s in enumerate(self.steps) if s.omitted),
            *(f"signals[{i}].payload" for i, s in enumerate(self.signals) if s.omitted),
            *(f"events[{e.key!r}]" for e in (self.outputs.events if self.outputs else ()) if e.omitted),
        ]

    @property
    def start(self) -> float:
        return min([self.run.created_at, *(s.started_at for s in self.steps)])

    @property
    def end(self) -> float:
        """Where the picture stops: the last thing that happened (a sleep's planned end included),
        or now for a live run."""
        ends = [s.ends_at for s in self.steps]
        return max([self.stopped_at or self.observed_at, *ends])

    @property
    def stopped_at(self) -> float | None:
        """When a finished or interrupted run stopped (its last checkpoint included); ``None``
        while it is live."""
        ended = self.run.ended_at
        if ended is None:
            return None
        return max([ended, *(s.finished_at for s in self.steps)])

    @property
    def duration(self) -> float:
        """From its creation to when it stopped, or to now for a live run (an interrupted run's
        does not keep growing)."""
        return max(0.0, (self.stopped_at or self.observed_at) - self.run.created_at)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.run.to_json(),
            "error": _error_json(self.run.error),
            "inputs": self.inputs,
            "inputs_preview": preview(self.inputs_text, 200),
            "result": self.result if self.has_result else None,
            "result_preview": preview(self.result_text, 200),
            "has_result": self.has_result,
            "omitted": self.omitted_values(),
            "lease_expires_at": self.lease_expires_at,
            "wake_at": self.wake_at,
            "deadline": self.deadline,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "observed_at": self.observed_at,
            "steps": [s.to_json() for s in self.steps],
            "signals": [s.to_json() for s in self.signals],
            "children": [c.to_json() for c in self.children],
            **(self.outputs.to_json() if self.outputs else {"events": None, "streams": None}),
            "versions": self.versions(),
            "forked_from": self.forked_from(),
        }

    def versions(self) -> list[str]:
        """The code versions that executed the run, in the order they first did (its journal's
        ``durable:version`` steps: a run stored before ``RunRecord.version`` shows them too)."""
        found: list[str] = []
        for step in self.steps:
            if step.kind == "version" and step.result is not None and str(step.result) not in found:
                found.append(str(step.result))
        return found

    def forked_from(self) -> dict[str, Any] | None:
        """Where a fork came from (its ``durable:fork`` step: ``run_id``, ``from_step``,
        ``copied``), or ``None`` for a run that is not a fork."""
        for step in self.steps:
            if step.kind == "fork" and isinstance(step.result, dict):
                origin = step.result
                return {
                    "run_id": str(origin.get("run_id")),
                    "from_step": str(origin.get("from_step")),
                    "copied": origin.get("copied"),
                }
        return None


async def load_timeline(store: Store, run_id: str, *, max_value: int | None = None) -> RunTimeline:
    """The run with its steps, signals and child runs, as users see it (``_lifecycle.reported``);
    ``UnknownRunError`` if there is none. Values (inputs, result, step results, signal payloads)
    whose stored text is longer than ``max_value`` are not decoded: they are ``None``, listed in
    the view's ``omitted``, and their previews say their size."""
    stored = await store.get_run(run_id)
    if stored is None:
        raise UnknownRunError(f"no run {run_id!r} in {store!r}")
    now = time.time()
    run = reported(stored, now)
    journal = await store.load_steps(run_id)
    steps = sorted(journal, key=lambda s: (s.started_at, s.finished_at, s.key))
    signals = await store.list_signals(run_id)
    children = await summarize(
        store,
        [
            child
            async for child in iter_runs(store, RunQuery(id_prefix=run_id + "/"))
            if child.parent_run_id == run_id
        ],
        now,
    )
    inputs, inputs_omitted = _value(run.inputs, max_value)
    result, result_omitted = _value(run.result, max_value)
    from durable._outputs_view import load_outputs  # it imports this module

    outputs = await load_outputs(store, run_id, journal, max_value)
    return RunTimeline(
        run=RunSummary.of(run, journal, now, await queued_of(store, run)),
        inputs=inputs,
        result=result,
        has_result=run.result is not None,
        lease_expires_at=run.lease_expires_at,
        wake_at=run.wake_at,
        deadline=run.deadline,
        steps=[StepView.of(s, now, max_value) for s in steps],
        signals=[SignalView.of(s, max_value) for s in signals],
        children=sorted(children, key=lambda c: c.created_at),
        observed_at=now,
        inputs_text=run.inputs,
        result_text=run.result,
        omitted=(("inputs",) if inputs_omitted else ()) + (("result",) if result_omitted else ()),
        outputs=outputs,
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
    count of stored runs read after each page.

    Pages are read by keyset (``RunQuery.after``), so each costs the same however deep it is; a
    store written before ``after`` existed ignores it, which the first such page shows, and is
    then paged by offset.
    """
    wanted = query.statuses
    # A corrupt record's stored status is anything at all: finding those reads every run.
    stored = None if wanted is None or RunStatus.CORRUPT in wanted else stored_statuses(wanted)
    exact = _reads_exactly(wanted)
    seen = yielded = 0
    offset = query.offset
    after = query.after  # a caller's cursor: start after that run
    by_keyset = True
    now = time.time()
    while limit is None or yielded < limit:
        size = PAGE_SIZE if limit is None or not exact else min(PAGE_SIZE, limit - yielded)
        page_query = replace(query, statuses=stored, limit=size, offset=offset, after=after)
        page = await store.list_runs(page_query)
        if after is not None and page and not listed_after(page[0], after):
            by_keyset, offset, after = False, query.offset + seen, None  # the store ignores `after`
            page = await store.list_runs(replace(page_query, after=None, offset=offset))
        for run in page:
            if not by_keyset and query.after is not None and not listed_after(run, query.after):
                continue  # a store that ignores `after`: the caller's cursor, applied here
            run = reported(run, now)
            if wanted is None or run.status in wanted:
                yield run
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
        seen += len(page)
        if by_keyset and page and page[-1].status is RunStatus.CORRUPT:
            # Its stored creation time may be unreadable, so it cannot mark the page's end.
            by_keyset, offset, after = False, query.offset + seen, None
        elif by_keyset and page:
            offset, after = 0, (page[-1].created_at, page[-1].run_id)
        elif not by_keyset:
            offset += len(page)
        if on_page is not None:
            on_page(seen)
        if len(page) < size:
            return


_REPORTED_AS = frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.INTERRUPTED})


def _reads_exactly(wanted: frozenset[RunStatus] | None) -> bool:
    """Whether every stored run matching the stored-status filter is wanted as reported: only a
    filter naming some but not all of running, waiting and interrupted (or naming corrupt) drops
    rows after reading."""
    if wanted is not None and RunStatus.CORRUPT in wanted:
        return False
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
