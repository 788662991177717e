"""How ``durable runs show`` prints one run: its facts, step timeline, failed attempts, signals,
outputs and child runs."""

from __future__ import annotations

import time

from durable import _inspect, _term
from durable._cli_output import (
    _facts,
    _in_flight_text,
    _out,
    _status,
    _table,
    _waiting_text,
    fmt_duration,
    fmt_time,
)
from durable._inspect import RunTimeline, StepView
from durable._records import QueuedRun
from durable._stream_cli import print_outputs as _print_outputs
from durable._term import Table


def _print_timeline(t: RunTimeline) -> None:
    out = _out()
    run = t.run
    head = _facts()
    head.add_row("run", (run.run_id, "bold"))
    head.add_row("workflow", run.workflow)
    head.add_row("status", _status(run.status + (" (cancel requested)" if run.cancel_requested else "")))
    if run.parent_run_id:
        head.add_row("parent", run.parent_run_id)
    if run.queued is not None:
        head.add_row("queue", _queue_text(run.queued))
    head.add_row("created", fmt_time(run.created_at))
    head.add_row("updated", fmt_time(run.updated_at))
    head.add_row("duration", fmt_duration(t.duration) + ("" if t.stopped_at is None else " (stopped)"))
    if run.status == "interrupted":
        if run.last_owner:
            head.add_row("last owner", f"{run.last_owner} ({_owner_gone(t)})")
        if run.in_flight is not None:
            head.add_row("in flight", _in_flight_text(run.in_flight))
        if run.waiting_for is not None:
            head.add_row("was waiting", "for " + _waiting_text(run.waiting_for))
    else:
        if run.owner:
            head.add_row("owner", f"{run.owner} (lease until {fmt_time(t.lease_expires_at)})")
        if run.in_flight is not None:
            head.add_row("in flight", _in_flight_text(run.in_flight) + " (at its last lease renewal)")
        if run.waiting_for is not None:
            head.add_row("waiting for", _waiting_text(run.waiting_for))
    _fork_and_versions(head, t)
    if t.wake_at is not None:
        head.add_row("wakes at", fmt_time(t.wake_at))
    if t.deadline is not None:
        head.add_row("deadline", fmt_time(t.deadline))
    room = max(40, min(200, out.width - 12))  # a preview on one line, after the labels
    head.add_row("inputs", _inspect.preview(t.inputs_text, room))
    if t.has_result:
        head.add_row("result", _inspect.preview(t.result_text, room))
    if run.error is not None:
        head.add_row("error", (_term.one_line(f"{run.error.type}: {run.error.message}"), "red"))
    out.table(head)
    if run.error is not None and run.error.traceback:
        out.line()
        out.line("traceback:", "bold")
        out.block(run.error.traceback.rstrip())

    out.line()
    out.line(f"steps ({len(t.steps)})", "bold")
    if t.steps:
        # A VERSION column only where some step has one: most apps never set a version.
        versioned = any(s.version is not None for s in t.steps)
        columns = ["#", "KEY", "TASK", "STATUS", "ATTEMPTS", "START", "DURATION", "RESULT"]
        steps = _table(*columns, *(["VERSION"] if versioned else []))
        for i, s in enumerate(t.steps, start=1):
            steps.add_row(
                str(i),
                s.key,
                s.task if s.kind == "task" else f"({s.kind})",
                _status(s.status),
                str(s.attempts),
                "+" + fmt_duration(max(0.0, s.started_at - t.start)),
                fmt_duration(s.duration),
                _result_cell(s),
                *([s.version or "-"] if versioned else []),
            )
        out.table(steps)
    retried = [s for s in t.steps if s.failed_attempts]
    if retried:
        out.line()
        out.line("failed attempts:", "bold")
        for s in retried:
            _print_failed_attempts(out, s)

    out.line()
    out.line(f"signals ({len(t.signals)})", "bold")
    if t.signals:
        signals = _table("SEQ", "NAME", "DELIVERY ID", "SENT", "PAYLOAD")
        for sig in t.signals:
            signals.add_row(
                str(sig.seq), sig.name, sig.delivery_id or "-", fmt_time(sig.sent_at), sig.payload_preview
            )
        out.table(signals)
    _print_outputs(out, t.outputs)
    if t.children:
        out.line()
        out.line(f"child runs ({len(t.children)})", "bold")
        children = _table("RUN ID", "WORKFLOW", "STATUS")
        for child in t.children:
            children.add_row(child.run_id, child.workflow, _status(child.status))
        out.table(children)


def _fork_and_versions(head: Table, t: RunTimeline) -> None:
    """Rows for the code version that created the run, a forked run's origin and the versions that
    executed the run (its journal)."""
    if t.run.version is not None:
        head.add_row("version", t.run.version)
    for s in t.steps:
        if s.kind == "fork" and isinstance(s.result, dict):
            head.add_row("forked from", f"run {s.result.get('run_id')} at step {s.result.get('from_step')}")
    versions = [str(s.result) for s in t.steps if s.kind == "version" and s.result is not None]
    if versions:
        head.add_row("versions", ", ".join(versions))


def _queue_text(q: QueuedRun) -> str:
    parts = [q.queue, f"priority {q.priority}"]
    if q.partition_key is not None:
        parts.append(f"partition {q.partition_key}")
    if q.not_before > time.time():
        parts.append(f"not before {fmt_time(q.not_before)}")
    if q.debounce_key is not None:
        parts.append(f"debounce key {q.debounce_key}")
    return ", ".join(parts)


def _owner_gone(t: RunTimeline) -> str:
    ended = t.lease_expires_at
    if ended is not None and ended > t.observed_at:
        return "its process is gone"
    return "no live lease" if ended is None else f"its lease ended {fmt_time(ended)}"


def _result_cell(s: StepView) -> str:
    if s.kind == "sleep" and s.until is not None:
        return f"until {fmt_time(s.until)}"
    if s.status != "completed":
        return ""
    return s.result_preview


def _print_failed_attempts(out: _term.Writer, s: StepView) -> None:
    key = _term.cell_text(s.key)
    if s.status == "failed":
        out.line(f"  {key}: failed after {s.attempts} attempt(s)", "red")
        if s.error is not None:
            out.line("    " + _term.cell_text(_term.one_line(f"{s.error.type}: {s.error.message}")))
            if s.error.traceback:
                out.block(s.error.traceback.rstrip(), indent="    ")
    else:
        out.line(f"  {key}: {s.failed_attempts} failed attempt(s) before it succeeded")
    failed = s.error.attempts if s.error is not None else ()
    for number, (kind, message) in enumerate(failed if s.status != "failed" else failed[:-1], start=1):
        out.line("    " + _term.cell_text(_term.one_line(f"attempt {number}: {kind}: {message}")))
