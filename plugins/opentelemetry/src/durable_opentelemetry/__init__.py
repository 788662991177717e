"""durable-opentelemetry: durable's observer hooks as OpenTelemetry spans, events and metrics.

Installed, it is on (``durable plugins`` lists it; ``DURABLE_DISABLE_PLUGINS=durable-opentelemetry``
turns it off). It uses only ``opentelemetry-api``: spans and metrics go wherever the application's
SDK sends them, and nowhere without one.

* A span ``durable.run <workflow>`` per run attempt (each execution of a run in a process: the
  first, a resume, a worker waking it), the current span while its body runs, so the step spans
  and any span the application opens inside a task nest under it; a direct call's run span is a
  child of the caller's span, a child run's a child of its parent's step span.
* Trace context travels with the run: when a run is created (``start()`` in a web handler,
  ``enqueue``, a direct call) the caller's context is injected with the global propagator
  (``traceparent``, W3C by default) into ``RunRecord.context``; an attempt that begins with no
  current span (a worker on another host, a resume in another process) extracts it, so its run
  span is a child of the span that started the run, in the same trace.
* A span ``durable.step <task>`` per step attempt (replayed steps have none); a retry is an event
  ``durable.retry`` on the failed attempt's span; a signal delivery an event ``durable.signal`` on
  the sender's current span (and on the run's span when the run executes in this process).
* Metrics (meter ``durable``): ``durable.steps`` and ``durable.step.retries`` (counters, by task),
  ``durable.step.duration`` (s, by task and outcome), ``durable.runs`` (counter, by workflow and
  how the attempt ended), ``durable.run.duration`` (s, an attempt), ``durable.run.queue_wait`` (s,
  from a run's creation, ``start()``, to its first execution; about 0 for a direct call),
  ``durable.signals`` (counter, by name and whether it was recorded).

OpenTelemetry itself is imported by the first hook call, not when the plugin is loaded: every
``Workflow`` and CLI command loads the installed plugins, and most CLI commands execute no run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable import hookimpl

if TYPE_CHECKING:
    from durable.store import RunRecord
    from durable_opentelemetry._telemetry import Telemetry

__all__ = ["Telemetry", "telemetry"]

_instance: Telemetry | None = None


def _get() -> Telemetry:
    """The instance the hooks report to, made (importing OpenTelemetry) by the first hook call."""
    global _instance
    if _instance is None:
        from durable_opentelemetry._telemetry import Telemetry

        _instance = Telemetry()
    return _instance


def __getattr__(name: str) -> Any:
    # ``telemetry`` (the instance) and ``Telemetry`` (its class) without importing OpenTelemetry
    # at ``import durable_opentelemetry``.
    if name == "telemetry":
        return _get()
    if name == "Telemetry":
        from durable_opentelemetry._telemetry import Telemetry

        return Telemetry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The hooks the entry point registers: each hands its call to the instance.


@hookimpl
def durable_run_context(workflow: str, run_id: str) -> dict[str, str] | None:
    return _get().durable_run_context(workflow, run_id)


@hookimpl
def durable_run_started(workflow: str, run_id: str, resumed: bool, attempt: int, run: RunRecord) -> None:
    _get().durable_run_started(workflow, run_id, resumed, attempt, run)


@hookimpl
def durable_run_finished(workflow: str, run_id: str, status: str, error: BaseException | None) -> None:
    _get().durable_run_finished(workflow, run_id, status, error)


@hookimpl
def durable_step_started(run_id: str, key: str, task: str, attempt: int) -> None:
    _get().durable_step_started(run_id, key, task, attempt)


@hookimpl
def durable_step_retried(
    run_id: str, key: str, task: str, attempt: int, error: BaseException, delay: float
) -> None:
    _get().durable_step_retried(run_id, key, task, attempt, error, delay)


@hookimpl
def durable_step_finished(
    run_id: str, key: str, task: str, attempts: int, error: BaseException | None
) -> None:
    _get().durable_step_finished(run_id, key, task, attempts, error)


@hookimpl
def durable_signal_delivered(run_id: str, name: str, delivery_id: str, recorded: bool) -> None:
    _get().durable_signal_delivered(run_id, name, delivery_id, recorded)
