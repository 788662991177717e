"""``durable queues`` and ``durable schedules``: what flow control a Workflow declares, and how its
queues stand in the store. Registered on the ``durable`` command by ``durable.cli``."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import click

from durable import _term
from durable._cli_base import json_option, store_option
from durable._queues import DEFAULT_QUEUE, Queue, queues_of
from durable.errors import DurableError
from durable.store import Capability, Store
from durable.workflow import Workflow

__all__ = ["register"]

# durable.cli imports this module as it loads, so this one reaches durable.cli's helpers only
# inside its commands; the options come from _cli_base, which imports neither.


def _limits(queue: Queue | None) -> dict[str, Any]:
    if queue is None:
        return {
            "concurrency": None,
            "worker_concurrency": None,
            "rate_limit": None,
            "partition_concurrency": None,
        }
    return {
        "concurrency": queue.concurrency,
        "worker_concurrency": queue.worker_concurrency,
        "rate_limit": list(queue.rate_limit) if queue.rate_limit else None,
        "partition_concurrency": queue.partition_concurrency,
    }


async def _queue_rows(wf: Workflow | None, store: Store) -> list[dict[str, Any]]:
    from durable import cli as _cli

    if Capability.QUEUES not in store.capabilities:
        _cli._fail(f"{store!r} does not declare the {Capability.QUEUES!r} capability: it keeps no queues")
    declared = queues_of(wf) if wf is not None else {}
    names = sorted({*declared, *await store.list_queues()})
    now = time.time()
    rows = []
    for name in names:
        queue = declared.get(name)
        window = queue.rate_limit[1] if queue is not None and queue.rate_limit else None
        stats = await store.queue_stats(name, now, window=window)
        rows.append(
            {
                "queue": name,
                "declared": queue is not None,
                **_limits(queue),
                "queued": stats.queued,
                "delayed": stats.delayed,
                "running": stats.running,
                "started_in_window": stats.started_in_window,
            }
        )
    return rows


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


@click.command("queues")
@click.argument("target", metavar="[MODULE:ATTRIBUTE]", required=False)
@store_option
@json_option
def queues_command(target: str | None, store_url: str | None, as_json: bool) -> None:
    """List each queue: its limits (declared by the Workflow at MODULE:ATTRIBUTE, if given), its runs
    queued, delayed and running, and how many started in its rate window.

    The store is --store (or $DURABLE_STORE), else the Workflow's db=.
    """
    from durable import cli as _cli

    wf = _cli._load_workflow(target) if target else None

    async def fetch() -> list[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            if wf is not None and not store_url:
                try:
                    store = await wf.get_store()
                except DurableError as exc:
                    _cli._fail(f"cannot open the store of {target}: {exc}")
                stack.push_async_callback(wf.close)
            else:
                _, store = await stack.enter_async_context(_cli.open_workflow(store_url))
            return await _queue_rows(wf, store)

    rows = _cli._run(fetch)
    if as_json:
        _cli._emit_json(rows)
        return
    table = _cli._table(
        "QUEUE", "LIMIT", "PER WORKER", "PER PARTITION", "RATE", "QUEUED", "DELAYED", "RUNNING"
    )
    for row in rows:
        rate = row["rate_limit"]
        used = row["started_in_window"]
        table.add_row(
            row["queue"] + ("" if row["declared"] else " (not in this code)"),
            _count(row["concurrency"]),
            _count(row["worker_concurrency"]),
            _count(row["partition_concurrency"]),
            "-" if rate is None else f"{used}/{rate[0]} per {rate[1]:g}s",
            str(row["queued"]),
            str(row["delayed"]),
            str(row["running"]),
        )
    _cli._out().table(table)


@click.command("schedules")
@click.argument("target", metavar="MODULE[:ATTRIBUTE]")
@click.option(
    "--count", type=click.IntRange(min=1, max=100), default=3, show_default=True, help="Fire times shown."
)
@json_option
def schedules_command(target: str, count: int, as_json: bool) -> None:
    """List the schedules of the Workflow at MODULE:ATTRIBUTE with their next fire times."""
    from durable import cli as _cli
    from durable._schedules import tick_run_id

    wf = _cli._load_workflow(target)
    now = time.time()
    rows: list[dict[str, Any]] = []
    for name, wfn in sorted(wf.executor.workflows.items()):
        schedule = wfn.schedule
        if schedule is None:
            continue
        try:
            ticks = schedule.ticks_after(now, count)
        except DurableError as exc:
            _cli._fail(str(exc))
        rows.append(
            {
                "workflow": name,
                "schedule": schedule.cron,
                "timezone": schedule.timezone,
                "catch_up": schedule.catch_up,
                "queue": wfn.queue or DEFAULT_QUEUE,
                "next": [tick.isoformat() for tick in ticks],
                "next_utc": [tick.astimezone(UTC).isoformat() for tick in ticks],
                "run_ids": [tick_run_id(wfn, tick) for tick in ticks],
            }
        )
    if as_json:
        _cli._emit_json(rows)
        return
    if not rows:
        _cli._out().line(f"{target} declares no schedules")
        return
    table = _term.Table(
        *(
            _term.Column(h, 40, shrink=False)
            for h in ("WORKFLOW", "SCHEDULE", "TIMEZONE", "QUEUE", "CATCH UP")
        ),
        _term.Column("NEXT", None, fold=True),
    )
    for row in rows:
        shown = ", ".join(datetime.fromisoformat(t).strftime("%Y-%m-%d %H:%M:%S%z") for t in row["next"])
        table.add_row(
            row["workflow"], row["schedule"], row["timezone"], row["queue"], str(row["catch_up"]), shown
        )
    _cli._out().table(table)


def register(group: click.Group) -> None:
    group.add_command(queues_command)
    group.add_command(schedules_command)
