"""durable-opentelemetry: durable's observer hooks as OpenTelemetry spans, events and metrics.

Installed, it is on (``durable plugins`` lists it; ``DURABLE_DISABLE_PLUGINS=durable-opentelemetry``
turns it off). It uses only ``opentelemetry-api``: spans and metrics go wherever the application's
SDK sends them, and nowhere without one.

* A span ``durable.run <workflow>`` per run attempt (each execution of a run in a process: the
  first, a resume, a worker waking it), the current span while its body runs, so the step spans
  and any span the application opens inside a task nest under it; a direct call's run span is a
  child of the caller's span, a child run's a child of its parent's step span.
* A span ``durable.step <task>`` per step attempt (replayed steps have none); a retry is an event
  ``durable.retry`` on the failed attempt's span; a signal delivery an event ``durable.signal`` on
  the sender's current span (and on the run's span when the run executes in this process).
* Metrics (meter ``durable``): ``durable.steps`` and ``durable.step.retries`` (counters, by task),
  ``durable.step.duration`` (s, by task and outcome), ``durable.runs`` (counter, by workflow and
  how the attempt ended), ``durable.run.duration`` (s, an attempt), ``durable.run.queue_wait`` (s,
  from a run's creation, ``start()``, to its first execution; about 0 for a direct call),
  ``durable.signals`` (counter, by name and whether it was recorded).

Not yet: a run started in one process (``start()`` in a web handler) and executed by a worker in
another begins a new trace there. Continuing the handler's trace needs the run's record to carry
the trace context from ``create_run`` to the worker (see the README, "Tracing with
OpenTelemetry").
"""

from __future__ import annotations

from durable_opentelemetry._telemetry import Telemetry

__all__ = ["Telemetry", "telemetry"]

telemetry = Telemetry()
"""The instance whose hooks the entry point registers."""

durable_run_started = telemetry.durable_run_started
durable_run_finished = telemetry.durable_run_finished
durable_step_started = telemetry.durable_step_started
durable_step_retried = telemetry.durable_step_retried
durable_step_finished = telemetry.durable_step_finished
durable_signal_delivered = telemetry.durable_signal_delivered
