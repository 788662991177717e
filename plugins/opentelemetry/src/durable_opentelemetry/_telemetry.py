"""``Telemetry``: the observer hooks, kept as spans (one per run attempt, one per step attempt)
and metrics. Every hook of a run is called in the task executing it, so a span made current in
``durable_run_started`` (``context.attach``) is the parent of what the body does."""

from __future__ import annotations

import threading
import time
from contextvars import Token
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from durable import hookimpl

if TYPE_CHECKING:
    from durable.store import RunRecord

INSTRUMENTATION = "durable"
RUN_SPAN = "durable.run"
STEP_SPAN = "durable.step"


def _version() -> str:
    try:
        return version("durable-opentelemetry")
    except PackageNotFoundError:  # pragma: no cover - a source checkout without metadata
        return "0"


@dataclass
class _Open:
    span: Span
    token: Token[context.Context]
    started: float
    labels: dict[str, str]
    steps: dict[str, _Open] = field(default_factory=dict)
    """For a run: its step attempts still open (ended with the run if no hook ends them)."""


def _error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class Telemetry:
    """durable's observer hooks as OpenTelemetry spans, span events and metrics."""

    def __init__(self) -> None:
        self._tracer = trace.get_tracer(INSTRUMENTATION, _version())
        meter = metrics.get_meter(INSTRUMENTATION, _version())
        self._steps = meter.create_counter("durable.steps", unit="{step}", description="Steps executed")
        self._retries = meter.create_counter(
            "durable.step.retries", unit="{retry}", description="Step attempts that failed and are retried"
        )
        self._step_duration = meter.create_histogram(
            "durable.step.duration", unit="s", description="Duration of a step attempt"
        )
        self._runs = meter.create_counter(
            "durable.runs", unit="{attempt}", description="Run attempts, by how they ended"
        )
        self._run_duration = meter.create_histogram(
            "durable.run.duration", unit="s", description="Duration of a run attempt in this process"
        )
        self._queue_wait = meter.create_histogram(
            "durable.run.queue_wait", unit="s", description="From a run becoming due to an executor taking it"
        )
        self._signals = meter.create_counter("durable.signals", unit="{signal}", description="Signals sent")
        self._open: dict[str, _Open] = {}
        """Run attempts executing in this process, by run id."""
        self._lock = threading.Lock()

    # -- runs ----------------------------------------------------------------------

    @hookimpl
    def durable_run_started(
        self, workflow: str, run_id: str, resumed: bool, attempt: int, run: RunRecord
    ) -> None:
        attributes: dict[str, Any] = {
            "durable.workflow": workflow,
            "durable.run_id": run_id,
            "durable.run.attempt": attempt,
            "durable.run.resumed": resumed,
        }
        if run.parent_run_id is not None:
            attributes["durable.run.parent_run_id"] = run.parent_run_id
        if run.deadline is not None:
            attributes["durable.run.deadline"] = run.deadline
        due_since = run.created_at if attempt == 1 else None  # from start() to its first execution
        span = self._tracer.start_span(
            f"{RUN_SPAN} {workflow}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        if due_since is not None:
            waited = max(0.0, time.time() - due_since)
            span.set_attribute("durable.run.queue_wait", waited)
            self._queue_wait.record(waited, {"durable.workflow": workflow})
        token = context.attach(trace.set_span_in_context(span))
        with self._lock:
            stale = self._open.pop(run_id, None)
            self._open[run_id] = _Open(span, token, time.monotonic(), {"durable.workflow": workflow})
        if stale is not None:  # its end was never reported (a store write failed after the body)
            self._end_run(stale, "unknown", None, detach=False)

    @hookimpl
    def durable_run_finished(
        self, workflow: str, run_id: str, status: str, error: BaseException | None
    ) -> None:
        with self._lock:
            attempt = self._open.pop(run_id, None)
        if attempt is None:  # ended before it started (a cancel found on claiming it)
            self._runs.add(1, {"durable.workflow": workflow, "durable.run.status": status})
            return
        self._end_run(attempt, status, error, detach=True)

    def _end_run(self, attempt: _Open, status: str, error: BaseException | None, *, detach: bool) -> None:
        for step in attempt.steps.values():  # stopped by a park, a cancellation, a lost lease
            step.span.set_attribute("durable.step.status", "interrupted" if status != "waiting" else status)
            step.span.end()
        attempt.steps.clear()
        span = attempt.span
        span.set_attribute("durable.run.status", status)
        if error is not None and status == "failed":
            _error(span, error)
        elif status == "completed":
            span.set_status(Status(StatusCode.OK))
        span.end()
        if detach:
            context.detach(attempt.token)  # also drops step spans left current in this task
        labels = {**attempt.labels, "durable.run.status": status}
        self._runs.add(1, labels)
        self._run_duration.record(time.monotonic() - attempt.started, labels)

    # -- steps ---------------------------------------------------------------------

    @hookimpl
    def durable_step_started(self, run_id: str, key: str, task: str, attempt: int) -> None:
        run = self._open.get(run_id)
        if run is None:  # a run whose start this plugin did not see (registered since)
            return
        span = self._tracer.start_span(
            f"{STEP_SPAN} {task}",
            attributes={
                "durable.run_id": run_id,
                "durable.step.key": key,
                "durable.step.task": task,
                "durable.step.attempt": attempt,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        run.steps[key] = _Open(span, token, time.monotonic(), {"durable.step.task": task})

    @hookimpl
    def durable_step_retried(
        self, run_id: str, key: str, task: str, attempt: int, error: BaseException, delay: float
    ) -> None:
        step = self._take_step(run_id, key)
        self._retries.add(1, {"durable.step.task": task})
        if step is None:
            return
        step.span.add_event(
            "durable.retry",
            {
                "durable.step.attempt": attempt + 1,
                "durable.retry.delay": delay,
                "exception.type": type(error).__name__,
            },
        )
        self._end_step(step, "retried", error)

    @hookimpl
    def durable_step_finished(
        self, run_id: str, key: str, task: str, attempts: int, error: BaseException | None
    ) -> None:
        step = self._take_step(run_id, key)
        self._steps.add(
            1, {"durable.step.task": task, "durable.step.status": "failed" if error else "completed"}
        )
        if step is not None:
            step.span.set_attribute("durable.step.attempts", attempts)
            self._end_step(step, "failed" if error else "completed", error)

    def _take_step(self, run_id: str, key: str) -> _Open | None:
        run = self._open.get(run_id)
        return None if run is None else run.steps.pop(key, None)

    def _end_step(self, step: _Open, status: str, error: BaseException | None) -> None:
        step.span.set_attribute("durable.step.status", status)
        if error is not None:
            _error(step.span, error)
        else:
            step.span.set_status(Status(StatusCode.OK))
        step.span.end()
        context.detach(step.token)
        self._step_duration.record(
            time.monotonic() - step.started, {**step.labels, "durable.step.status": status}
        )

    # -- signals -------------------------------------------------------------------

    @hookimpl
    def durable_signal_delivered(self, run_id: str, name: str, delivery_id: str, recorded: bool) -> None:
        attributes: dict[str, AttributeValue] = {
            "durable.run_id": run_id,
            "durable.signal.name": name,
            "durable.signal.delivery_id": delivery_id,
            "durable.signal.recorded": recorded,
        }
        self._signals.add(1, {"durable.signal.name": name, "durable.signal.recorded": recorded})
        sender = trace.get_current_span()
        sender.add_event("durable.signal", attributes)
        run = self._open.get(run_id)
        if run is not None and run.span is not sender:
            run.span.add_event("durable.signal", attributes)
