"""Store-level inspection and maintenance shared by the ``durable`` CLI and the run viewer:
``prune`` and ``resume_run`` here, and the names of the modules it gathers (``_display``,
``_listing``, ``_summary``, ``_timeline``) under one roof for the front ends.

Everything works on any ``Store`` through its public contract, so a third-party store gets
listing, timelines and pruning without extra code. Views are plain dataclasses whose
``to_json()`` output is what ``--json`` prints and what the web UI polls, so both front ends
show the same facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from durable._display import DISPLAY_LIMIT, iso_time, json_text, parse_duration, preview
from durable._lifecycle import FINISHED
from durable._listing import PAGE_SIZE, iter_runs, list_reported
from durable._records import RunQuery, RunRecord, RunStatus
from durable._summary import InFlight, RunSummary, WaitingFor, summarize
from durable._timeline import RunTimeline, SignalView, StepView, load_timeline
from durable.errors import ConfigurationError, UnknownRunError
from durable.store import Store, redact_url

__all__ = [
    "DISPLAY_LIMIT",
    "FINISHED",
    "PAGE_SIZE",
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
