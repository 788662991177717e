"""``Telemetry``: the observer hooks, kept as spans (one per run attempt, one per step attempt)
and metrics. Every hook of a run is called in the task executing it, so a span made current in
``durable_run_started`` (``context.attach``) is the parent of what the body does. The package's
``__init__`` registers module functions that hand each call to one instance, made at the first."""

from __future__ import annotations

import json
import threading
import time
from contextvars import Token
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

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
    span: Span | None
    """``None`` while no tracer provider is set (metrics only)."""
    token: Token[context.Context] | None
    started: float
    labels: dict[str, str]
    steps: dict[str, _Open] = field(default_factory=dict)
    """For a run: its step attempts still open (ended with the run if no hook ends them)."""


_NO_TRACER = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def _tracing() -> bool:
    """Whether the application set a tracer provider (an SDK): until then no span is made."""
    return not isinstance(trace.get_tracer_provider(), _NO_TRACER)


def _metering() -> bool:
    """Whether the application set a meter provider: until then nothing is measured."""
    provider = metrics.get_meter_provider()
    return (
        not isinstance(provider, metrics.NoOpMeterProvider)
        and type(provider).__name__ != "_ProxyMeterProvider"
    )


def _creator(run: RunRecord) -> context.Context | None:
    """The context to continue in a run attempt: ``None`` (the current one) where a span is
    current (a direct call's caller, a child's parent step), else the one stored when the run was
    created (a worker's attempt, a resume in another process), if any."""
    if run.context is None or trace.get_current_span().get_span_context().is_valid:
        return None
    try:
        headers = json.loads(run.context)
    except ValueError:  # not written by a propagator: nothing to continue
        return None
    return propagate.extract(headers) if isinstance(headers, dict) else None


def _error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class Telemetry:
    """durable's observer hooks as OpenTelemetry spans, span events and metrics.

    Without an SDK (no tracer or meter provider set) every hook returns at its first line: a step
    costs the two hook calls and nothing else. A provider set later is used from the next run on.
    """

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
            "durable.run.queue_wait", unit="s", description="From a run's start() to its first execution"
        )
        self._signals = meter.create_counter("durable.signals", unit="{signal}", description="Signals sent")
        self._open: dict[str, _Open] = {}
        """Run attempts executing in this process, by run id."""
        self._metering = False
        """Whether a meter provider was set when the last run attempt began."""
        self._lock = threading.Lock()

    # -- runs ----------------------------------------------------------------------

    def durable_run_context(self, workflow: str, run_id: str) -> dict[str, str] | None:
        """The caller's trace context as headers of the global propagator (``traceparent``),
        stored with the run being created; ``None`` outside any span."""
        headers: dict[str, str] = {}
        propagate.inject(headers)
        return headers or None

    def durable_run_started(
        self, workflow: str, run_id: str, resumed: bool, attempt: int, run: RunRecord
    ) -> None:
        tracing, self._metering = _tracing(), _metering()
        if not (tracing or self._metering):
            return
        labels = {"durable.workflow": workflow}
        span = token = None
        waited = max(0.0, time.time() - run.created_at) if attempt == 1 else None  # from start()
        if tracing:
            attributes: dict[str, AttributeValue] = {
                "durable.workflow": workflow,
                "durable.run_id": run_id,
                "durable.run.attempt": attempt,
                "durable.run.resumed": resumed,
            }
            if run.parent_run_id is not None:
                attributes["durable.run.parent_run_id"] = run.parent_run_id
            if run.deadline is not None:
                attributes["durable.run.deadline"] = run.deadline
            if waited is not None:
                attributes["durable.run.queue_wait"] = waited
            parent = _creator(run)
            span = self._tracer.start_span(
                f"{RUN_SPAN} {workflow}", parent, kind=SpanKind.INTERNAL, attributes=attributes
            )
            token = context.attach(trace.set_span_in_context(span, parent))
        if waited is not None and self._metering:
            self._queue_wait.record(waited, labels)
        with self._lock:
            stale = self._open.pop(run_id, None)
            self._open[run_id] = _Open(span, token, time.monotonic(), labels)
        if stale is not None:  # its end was never reported (a store write failed after the body)
            self._end_run(stale, "unknown", None, detach=False)

    def durable_run_finished(
        self, workflow: str, run_id: str, status: str, error: BaseException | None
    ) -> None:
        with self._lock:
            attempt = self._open.pop(run_id, None)
        if attempt is not None:
            self._end_run(attempt, status, error, detach=True)
        elif self._metering:  # ended before it began (a cancel found on claiming it)
            self._runs.add(1, {"durable.workflow": workflow, "durable.run.status": status})

    def _end_run(self, attempt: _Open, status: str, error: BaseException | None, *, detach: bool) -> None:
        for step in attempt.steps.values():  # stopped by a park, a cancellation, a lost lease
            if step.span is not None:
                step.span.set_attribute(
                    "durable.step.status", "waiting" if status == "waiting" else "interrupted"
                )
                step.span.end()
        attempt.steps.clear()
        span = attempt.span
        if span is not None:
            span.set_attribute("durable.run.status", status)
            if error is not None and status == "failed":
                _error(span, error)
            elif status == "completed":
                span.set_status(Status(StatusCode.OK))
            span.end()
        if detach and attempt.token is not None:
            context.detach(attempt.token)  # also drops step spans left current in this task
        if self._metering:
            labels = {**attempt.labels, "durable.run.status": status}
            self._runs.add(1, labels)
            self._run_duration.record(time.monotonic() - attempt.started, labels)

    # -- steps ---------------------------------------------------------------------

    def durable_step_started(self, run_id: str, key: str, task: str, attempt: int) -> None:
        run = self._open.get(run_id)
        if run is None:  # nothing to record (no SDK), or its start was not seen (registered since)
            return
        span = token = None
        if run.span is not None:
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

    def durable_step_retried(
        self, run_id: str, key: str, task: str, attempt: int, error: BaseException, delay: float
    ) -> None:
        step = self._take_step(run_id, key)
        if step is None:
            return
        if step.span is not None:
            step.span.add_event(
                "durable.retry",
                {
                    "durable.step.attempt": attempt + 1,
                    "durable.retry.delay": delay,
                    "exception.type": type(error).__name__,
                },
            )
        if self._metering:
            self._retries.add(1, step.labels)
        self._end_step(step, "retried", error)

    def durable_step_finished(
        self, run_id: str, key: str, task: str, attempts: int, error: BaseException | None
    ) -> None:
        step = self._take_step(run_id, key)
        if step is None:
            return
        status = "failed" if error else "completed"
        if step.span is not None:
            step.span.set_attribute("durable.step.attempts", attempts)
        if self._metering:
            self._steps.add(1, {**step.labels, "durable.step.status": status})
        self._end_step(step, status, error)

    def _take_step(self, run_id: str, key: str) -> _Open | None:
        run = self._open.get(run_id)
        return None if run is None else run.steps.pop(key, None)

    def _end_step(self, step: _Open, status: str, error: BaseException | None) -> None:
        span = step.span
        if span is not None:
            span.set_attribute("durable.step.status", status)
            if error is not None:
                _error(span, error)
            else:
                span.set_status(Status(StatusCode.OK))
            span.end()
        if step.token is not None:
            context.detach(step.token)
        if self._metering:
            self._step_duration.record(
                time.monotonic() - step.started, {**step.labels, "durable.step.status": status}
            )

    # -- signals -------------------------------------------------------------------

    def durable_signal_delivered(self, run_id: str, name: str, delivery_id: str, recorded: bool) -> None:
        if _metering():
            self._signals.add(1, {"durable.signal.name": name, "durable.signal.recorded": recorded})
        if not _tracing():
            return
        attributes: dict[str, AttributeValue] = {
            "durable.run_id": run_id,
            "durable.signal.name": name,
            "durable.signal.delivery_id": delivery_id,
            "durable.signal.recorded": recorded,
        }
        sender = trace.get_current_span()
        sender.add_event("durable.signal", attributes)
        run = self._open.get(run_id)
        if run is not None and run.span is not None and run.span is not sender:
            run.span.add_event("durable.signal", attributes)
