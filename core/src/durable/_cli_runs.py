"""``durable runs ...`` and ``durable signal``: list, check, show, cancel, resume, fork and prune the
runs in a store, and deliver a signal to one."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from durable import _inspect, _term
from durable._cli_base import (
    FINISHED_NAMES,
    STATUSES,
    _fail,
    _run,
    json_option,
    open_workflow,
    store_option,
)
from durable._cli_output import _emit_json, _out, _Progress, _status, _status_detail, _table, fmt_time
from durable._cli_timeline import _print_timeline
from durable._inspect import FINISHED, RunSummary, RunTimeline
from durable._records import RunQuery, RunStatus
from durable.errors import DurableError, UnknownRunError

if TYPE_CHECKING:
    from durable._check import Damage

__all__ = ["register"]


@click.group("runs")
def runs_group() -> None:
    """List, show, cancel, resume and prune runs."""


@runs_group.command("list")
@store_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only runs with this status (repeatable).",
)
@click.option("--workflow", help="Only runs of this workflow.")
@click.option("--version", "version", help="Only runs created by code of this version (Workflow(version=)).")
@click.option("--prefix", help="Only run ids starting with this.")
@click.option("--since", metavar="AGE", help="Only runs created within AGE (30m, 1h, 2d).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most N runs.")
@click.option(
    "--offset", type=click.IntRange(min=0), default=0, show_default=True, help="Skip the first N runs."
)
@json_option
def runs_list(
    store_url: str | None,
    statuses: Sequence[str],
    workflow: str | None,
    version: str | None,
    prefix: str | None,
    since: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    try:
        created_after = (
            None if since is None else time.time() - _inspect.parse_duration(since).total_seconds()
        )
    except DurableError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    query = RunQuery(
        statuses=frozenset(RunStatus(s) for s in statuses) or None,
        workflow=workflow,
        id_prefix=prefix,
        created_after=created_after,
        offset=offset,
        version=version,
    )
    progress = _Progress("listing runs", quiet=as_json or not sys.stderr.isatty())

    async def fetch() -> list[RunSummary]:
        async with open_workflow(store_url) as (_, store):
            try:
                found = [
                    run
                    async for run in _inspect.iter_runs(
                        store, query, limit=limit, on_page=lambda n: progress(n, max(n, limit))
                    )
                ]
            finally:
                progress.close()
            return await _inspect.summarize(store, found)

    runs = _run(fetch)
    if as_json:
        _emit_json([r.to_json() for r in runs])
        return
    if not runs:
        click.echo("no runs match")
        return
    table = _table("RUN ID", "WORKFLOW", "STATUS", "CREATED", "UPDATED", "ERROR")
    for r in runs:
        error = "" if r.error is None else f"{r.error.type.rsplit('.', 1)[-1]}: {r.error.message}"
        table.add_row(
            r.run_id,
            r.workflow,
            _status(r.status, _status_detail(r)),
            fmt_time(r.created_at),
            fmt_time(r.updated_at),
            _term.one_line(error, 200),
        )
    _out().table(table)
    more = " (--limit reached; page with --offset)" if len(runs) == limit else ""
    click.echo(f"{len(runs)} run{'s' if len(runs) != 1 else ''}{more}")


@runs_group.command("check")
@store_option
@json_option
def runs_check(store_url: str | None, as_json: bool) -> None:
    """Find stored records that cannot be read (workers and listings skip them); changes nothing.

    Exits 1 when one is found.
    """
    from durable._check import check_store

    progress = _Progress("checking runs", quiet=as_json or not sys.stderr.isatty())

    async def act() -> list[Damage]:
        async with open_workflow(store_url) as (_, store):
            try:
                return await check_store(store, on_page=lambda n: progress(n, n))
            finally:
                progress.close()

    damaged = _run(act)
    if as_json:
        _emit_json([d.to_json() for d in damaged])
    elif damaged:
        table = _table("RUN ID", "FIELD", "PROBLEM")
        for d in damaged:
            table.add_row(d.run_id, d.field or "", _term.one_line(d.message, 200))
        _out().table(table)
        click.echo(f"{len(damaged)} damaged record{'s' if len(damaged) != 1 else ''}")
    else:
        click.echo("every record can be read")
    if damaged:
        sys.exit(1)


@runs_group.command("show")
@click.argument("run_id")
@store_option
@json_option
def runs_show(run_id: str, store_url: str | None, as_json: bool) -> None:
    """Show a run: status, inputs, result or error, its step timeline and signals."""

    async def fetch() -> RunTimeline:
        async with open_workflow(store_url) as (_, store):
            # A human reads previews: values too large to show are not even decoded.
            limit = None if as_json else _inspect.DISPLAY_LIMIT
            return await _inspect.load_timeline(store, run_id, max_value=limit)

    timeline = _run(fetch)
    if as_json:
        _emit_json(timeline.to_json())
        return
    _print_timeline(timeline)


@runs_group.command("cancel")
@click.argument("run_id")
@store_option
@json_option
def runs_cancel(run_id: str, store_url: str | None, as_json: bool) -> None:
    """Cancel a run (and its child runs).

    An idle run is cancelled at once; a run executing elsewhere stops when its owner next
    renews its lease. `durable runs resume` continues it later.
    """

    async def act() -> tuple[RunSummary, str]:
        async with open_workflow(store_url) as (wf, store):
            before = await store.get_run(run_id)
            if before is None:
                raise UnknownRunError(f"cannot cancel: no run {run_id!r}")
            if before.status is RunStatus.COMPLETED:
                _fail(f"run {run_id!r} is already completed; there is nothing to cancel")
            if before.status is RunStatus.CANCELLED:
                return RunSummary.of(before), f"run {run_id!r} was already cancelled"
            after = await wf.cancel(run_id)
            if after.status is RunStatus.CANCELLED:
                return RunSummary.of(after), f"run {run_id!r} cancelled"
            return RunSummary.of(after), (
                f"cancel requested for run {run_id!r}: its executor ({_term.visible(str(after.owner))}) "
                "stops it at its next lease renewal"
            )

    summary, message = _run(act)
    if as_json:
        _emit_json({**summary.to_json(), "message": message})
    else:
        click.echo(message)


@runs_group.command("resume")
@click.argument("run_id")
@store_option
@json_option
def runs_resume(run_id: str, store_url: str | None, as_json: bool) -> None:
    """Make a failed or cancelled run pending again.

    This resets the run in the store; it does not execute it here. A worker of its
    workflow, or the next call of the workflow with this run id, resumes it from its
    journal: finished steps replay, the rest executes.
    """

    async def act() -> tuple[RunSummary, str]:
        async with open_workflow(store_url) as (_, store):
            run, reset = await _inspect.resume_run(store, run_id)
            if run.status is RunStatus.COMPLETED:
                _fail(f"run {run_id!r} is completed; there is nothing to resume")
            if not reset:
                return RunSummary.of(run), (
                    f"run {run_id!r} is {run.status}, not failed or cancelled; left unchanged"
                )
            return RunSummary.of(run), (
                f"run {run_id!r} reset to pending: a worker for workflow {run.workflow!r} or the next call "
                "with this run id resumes it from its journal"
            )

    summary, message = _run(act)
    if as_json:
        _emit_json({**summary.to_json(), "message": message})
    else:
        click.echo(message)


@runs_group.command("fork")
@click.argument("run_id")
@click.option("--from-step", "from_step", required=True, metavar="KEY", help="The first step to run again.")
@click.option("--new-run-id", metavar="ID", help="The fork's id (default: RUN_ID.fork-<random>).")
@store_option
@json_option
def runs_fork(
    run_id: str, from_step: str, new_run_id: str | None, store_url: str | None, as_json: bool
) -> None:
    """Create a new run of RUN_ID's workflow and inputs that repeats none of its steps before KEY.

    The fork's journal holds RUN_ID's checkpoints before step KEY (in journal order); a worker for
    its workflow executes it from KEY on. RUN_ID itself is left as it is.
    """
    from durable._fork import fork

    async def act() -> tuple[RunSummary, str]:
        async with open_workflow(store_url) as (wf, store):
            forked = await fork(
                store, run_id, from_step=from_step, new_run_id=new_run_id, owner=wf.owner,
                lease_seconds=wf.lease_seconds, plugins=wf.plugins,
            )  # fmt: skip
            copied = [s for s in await store.load_steps(forked.run_id) if s.task != "durable:fork"]
            return RunSummary.of(forked), (
                f"run {forked.run_id!r} forked from run {run_id!r} at step {from_step!r} ({len(copied)} "
                f"step(s) copied): a worker for workflow {forked.workflow!r} executes it from there"
            )

    summary, message = _run(act)
    if as_json:
        _emit_json({**summary.to_json(), "forked_from": run_id, "from_step": from_step, "message": message})
    else:
        click.echo(message)


@runs_group.command("prune")
@store_option
@click.option(
    "--older-than", required=True, metavar="AGE", help="Delete runs last updated before AGE ago (30d)."
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(FINISHED_NAMES),
    help="Only finished runs with this status (repeatable; default: all finished).",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@json_option
def runs_prune(
    store_url: str | None, older_than: str, statuses: Sequence[str], dry_run: bool, quiet: bool, as_json: bool
) -> None:
    """Delete finished runs (completed, failed, cancelled) with their steps and signals.

    Pending, running and waiting runs are never deleted.
    """
    try:
        age = _inspect.parse_duration(older_than)
    except DurableError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    chosen = frozenset(RunStatus(s) for s in statuses) or FINISHED
    cutoff = time.time() - age.total_seconds()
    progress = _Progress("deleting runs", quiet=quiet or as_json)

    async def act() -> int:
        async with open_workflow(store_url) as (_, store):
            try:
                return await _inspect.prune(
                    store, cutoff, statuses=chosen, progress=progress, dry_run=dry_run
                )
            finally:
                progress.close()

    count = _run(act)
    names = ", ".join(sorted(chosen))
    if as_json:
        _emit_json(
            {"deleted": 0 if dry_run else count, "matched": count, "dry_run": dry_run, "cutoff": cutoff}
        )
    elif dry_run:
        click.echo(f"would delete {count} run(s) ({names}) last updated before {fmt_time(cutoff)}")
    else:
        click.echo(f"deleted {count} run(s) ({names}) last updated before {fmt_time(cutoff)}")


@click.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.argument("payload", default="null", required=False)
@store_option
@click.option("--delivery-id", default="", help="Idempotency key: a second delivery with it is ignored.")
@click.option("--create", is_flag=True, help="Deliver even if the run does not exist yet.")
@json_option
def signal_command(
    run_id: str, name: str, payload: str, store_url: str | None, delivery_id: str, create: bool, as_json: bool
) -> None:
    """Deliver signal NAME with a JSON PAYLOAD (default null) to run RUN_ID."""
    if not name:
        raise click.BadParameter("a signal name cannot be empty", param_hint="NAME")
    try:
        value = json.loads(payload)
    except ValueError as exc:
        _fail(f"payload is not valid JSON ({exc}): {payload[:80]!r}")

    async def act() -> bool:
        async with open_workflow(store_url) as (wf, _):
            # The API keeps a delivery for a run that has not started; an operator typing a run id
            # more likely mistyped it, so here an unknown run is an error unless --create.
            if not create and await wf.get_run(run_id) is None:
                store = await wf.get_store()
                raise UnknownRunError(
                    f"cannot deliver signal {name!r}: no run {run_id!r} in {store!r} "
                    "(pass --create to deliver before the run starts)",
                    run_id=run_id,
                )
            return await wf.complete(run_id, name, value, delivery_id=delivery_id)

    recorded = _run(act)
    if as_json:
        _emit_json({"run_id": run_id, "name": name, "delivery_id": delivery_id, "recorded": recorded})
    elif recorded:
        click.echo(f"signal {name!r} delivered to run {run_id!r}")
    else:
        click.echo(
            f"signal {name!r} with delivery id {delivery_id!r} was already delivered to run {run_id!r}"
        )


def register(group: click.Group) -> None:
    group.add_command(runs_group)
    group.add_command(signal_command)
