"""One run in full: its steps, signals, events and streams as a ``RunTimeline``, what ``runs show``
and the viewer's run page display."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from durable._display import _error_json, _error_of, _number, _value, iso_time, preview
from durable._lifecycle import reported
from durable._listing import iter_runs
from durable._records import ErrorInfo, RunQuery, SignalRecord, StepRecord, StepStatus
from durable._summary import RunSummary, queued_of, summarize
from durable.errors import UnknownRunError
from durable.store import Store

if TYPE_CHECKING:
    from durable._outputs_view import OutputsView


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
