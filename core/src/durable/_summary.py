"""A run as one row of a listing: ``RunSummary`` with what it is doing now (``InFlight``) or waiting
for (``WaitingFor``), and its queue entry."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from durable._display import _decode, _error_of, _number, iso_time
from durable._lifecycle import FINISHED, activity_of, reported
from durable._records import ErrorInfo, QueuedRun, RunRecord, RunStatus, StepRecord, StepStatus
from durable.store import Capability, Store


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
