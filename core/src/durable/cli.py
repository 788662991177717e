"""The ``durable`` command: inspect and operate runs in any store, list plugins and stores.

The store comes from ``--store URL`` or ``DURABLE_STORE``. Human-readable output by
default, ``--json`` for scripts. Failures print one ``error: ...`` line on stderr and
exit with status 1 (2 for bad usage); set ``DURABLE_DEBUG=1`` to see a traceback.

What the store holds is shown safely: characters a terminal would act on (ESC and other
controls) appear as escapes (``\x1b``) in everything but ``--json``, columns have bounded
widths, store URLs never show their passwords, and values larger than 64 kB are shown cut,
with their size. ``--json`` prints strict JSON: NaN and infinities in stored values are
written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import signal as _signals
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

try:
    import click
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise SystemExit(
        f"the durable command needs its extra dependencies ({exc.name} is missing): "
        "pip install 'durable-core[cli]' (python-durable includes it)"
    ) from None

from durable import _inspect, _term
from durable._inspect import FINISHED, InFlight, RunSummary, RunTimeline, StepView, WaitingFor
from durable._plugins import as_store_url, get_plugin_manager
from durable._records import QueuedRun, RunQuery, RunStatus
from durable._term import Cell, Column, Table
from durable.errors import DurableError, StoreNotFound, UnknownRunError
from durable.store import Store, accepts_create, redact_text, redact_url
from durable.workflow import Workflow

if TYPE_CHECKING:
    from durable._check import Damage

__all__ = ["cli", "main"]

T = TypeVar("T")

STORE_ENV = "DURABLE_STORE"
DEBUG_ENV = "DURABLE_DEBUG"
OPEN_TIMEOUT_ENV = "DURABLE_OPEN_TIMEOUT"
STATUSES = [str(s) for s in RunStatus]
FINISHED_NAMES = sorted(str(s) for s in FINISHED)
BAR_AFTER = 0.5
"""Seconds a command runs before it shows a progress bar on a terminal."""


class CLIError(click.ClickException):
    """A failure reported as one line on stderr, exit status 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line, whatever the underlying message looks like: scripts grep stderr. A driver's
        # message may quote the store URL or its password, and stored text may hold escapes.
        for url in _urls_in_use():
            message = redact_text(message, url)
        super().__init__(_term.visible(" ".join(message.split())))

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _fail(message: str) -> NoReturn:
    raise CLIError(message)


def _urls_in_use() -> list[str]:
    """The store URLs this command was given (``--store``, ``$DURABLE_STORE``), whose secrets no
    message may show."""
    urls = [os.environ.get(STORE_ENV, "")]
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        given = ctx.params.get("store_url")
        if isinstance(given, str):
            urls.append(given)
        ctx = ctx.parent
    return [url for url in dict.fromkeys(urls) if url]


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run one command's coroutine, turning every failure into a ``CLIError``."""

    results: list[T] = []

    async def runner() -> None:
        # The result is handed over here, not as the main task's: asyncio.run's SIGINT handler
        # holds that task, and restoring the handler builds the task's repr, result included
        # (a second for a 100 MB value).
        results.append(await factory())

    try:
        asyncio.run(runner())
        return results[0]
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except KeyboardInterrupt:
        raise click.Abort() from None
    except DurableError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        raise CLIError(str(exc)) from None
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        raise CLIError(f"{type(exc).__name__}: {exc}") from None


def _store_url(url: str | None) -> str:
    if not url:
        raise click.UsageError(
            f"no store given: pass --store URL or set {STORE_ENV} (e.g. sqlite:///durable.db)"
        )
    return as_store_url(url)


def _store_from_env() -> bool:
    """Whether this command's store URL came from ``$DURABLE_STORE`` rather than ``--store``."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source("store_url") is click.core.ParameterSource.ENVIRONMENT


def _unopened_store(url: str) -> Store:
    return get_plugin_manager().store_from_url(url)


async def _open_existing(store: Store) -> Store:
    """Open ``store`` without creating its data (``open(create=False)``): a mistyped URL must not
    leave an empty store behind and show nothing. A store predating ``create=`` opens as it is."""
    await (store.open(create=False) if accepts_create(store) else store.open())
    return store


@asynccontextmanager
async def open_workflow(url: str | None) -> AsyncIterator[tuple[Workflow, Store]]:
    """A ``Workflow`` bound to the store at ``url``, opened (never created), closed on exit."""
    target = _store_url(url)
    store = _unopened_store(target)
    wf = Workflow("durable-cli", db=store)
    timeout = float(os.environ.get(OPEN_TIMEOUT_ENV, "15"))
    shown = _inspect.redact_url(target) + (f" (from {STORE_ENV})" if _store_from_env() else "")
    try:
        opened = await asyncio.wait_for(_open_existing(store), timeout)
        wf._opened_on = asyncio.get_running_loop()  # opened here, so the Workflow does not open it again
    except StoreNotFound as exc:
        _fail(f"{exc} (check {STORE_ENV if _store_from_env() else '--store'})")
    except DurableError as exc:
        _fail(f"cannot open store {shown}: {exc}")
    except TimeoutError:
        _fail(f"cannot open store {shown}: no answer within {timeout:g}s")
    except Exception as exc:
        _fail(f"cannot open store {shown}: {type(exc).__name__}: {exc}")
    try:
        yield wf, opened
    finally:
        await wf.close()


# -- output helpers ----------------------------------------------------------------


def _out() -> _term.Writer:
    return _term.Writer(sys.stdout)


def _emit_json(data: Any) -> None:
    click.echo(_inspect.json_text(data, indent=2))


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


_STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "waiting": "blue",
    "pending": "magenta",
    "interrupted": "bright_red",
}


def _status(status: str, detail: str = "") -> Cell:
    return (f"{status} ({detail})" if detail else status, _STATUS_STYLE.get(status, ""))


def _in_flight_text(f: InFlight) -> str:
    if f.known:
        return ", ".join(f"in {key}, attempt {attempt}" for key, attempt in f.steps)
    where = "before the first checkpoint" if f.after is None else f"after checkpoint {f.after}"
    return f"step in flight unknown, {where}"


def _waiting_text(w: WaitingFor) -> str:
    if w.kind == "sleep" and w.until is not None:
        return f"sleep until {fmt_time(w.until)}"
    text = f"signal {w.signal}"
    if w.timeout is not None:
        text += f", timeout {fmt_duration(w.timeout)}"
    return text + (", delivered" if w.delivered else "")


def _status_detail(r: RunSummary) -> str:
    """What a listing says after the status: what a waiting run waits for, where an interrupted
    run stopped."""
    if r.status == "interrupted":
        if r.waiting_for is not None and r.in_flight is None:
            return "was waiting for " + _waiting_text(r.waiting_for)
        return "" if r.in_flight is None else _in_flight_text(r.in_flight)
    if r.waiting_for is not None:
        return _waiting_text(r.waiting_for)
    return ""


# Every column has a bounded width: a 10,000-character value cannot push the others away.
# Identifiers fold onto more lines (never cut: they are typed back into commands); free text is
# cut with an ellipsis; times and counts keep their width.
_COLUMNS = {
    "RUN ID": Column("RUN ID", 100, fold=True),
    "KEY": Column("KEY", 100, fold=True),
    "NAME": Column("NAME", 64, fold=True),
    "DELIVERY ID": Column("DELIVERY ID", 64, fold=True),
    "HOOKS": Column("HOOKS", 100, fold=True),
    "WORKFLOW": Column("WORKFLOW", 40),
    "TASK": Column("TASK", 40),
    "STATUS": Column("STATUS", 80),
    "ERROR": Column("ERROR", 60),
    "RESULT": Column("RESULT", 60),
    "PAYLOAD": Column("PAYLOAD", 60),
}


def _table(*headers: str) -> Table:
    return Table(*(_COLUMNS.get(h) or Column(h, 24, shrink=False) for h in headers))


def _facts() -> Table:
    """Label and value, no header: a value folds onto more lines within the terminal's width."""
    return Table(Column("", 20, shrink=False), Column("", None, fold=True), header=False)


class _Progress:
    """Progress on stderr: a bar on a terminal, a few plain lines in logs, nothing if quiet."""

    def __init__(self, what: str, *, quiet: bool = False) -> None:
        self.what = what
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._last_line = -1.0
        self._started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or total == 0:
            return
        if self.tty:
            if self._bar is None and time.monotonic() - self._started < BAR_AFTER:
                return  # a quick command shows no bar (and does not import rich for one)
            if self._bar is None:
                from rich.console import Console
                from rich.progress import Progress

                self._bar = Progress(console=Console(file=sys.stderr), transient=True)
                self._bar.start()
                self._task = self._bar.add_task(self.what, total=total)
            self._bar.update(self._task, completed=done, total=total)
            return
        now = time.monotonic()
        if done in (0, total) or now - self._last_line >= 1.0:
            self._last_line = now
            click.echo(f"{self.what}: {done}/{total}", err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- commands ------------------------------------------------------------------------

store_option = click.option(
    "--store",
    "store_url",
    envvar=STORE_ENV,
    metavar="URL",
    help=f"Store URL (sqlite:///durable.db, memory://, redis://..., postgresql://...); default ${STORE_ENV}.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.group(
    name="durable", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="durable-core", prog_name="durable")
def cli() -> None:
    """Inspect and operate durable workflow runs.

    Every command that reads runs takes --store URL (or $DURABLE_STORE).
    """


@cli.command("plugins")
@json_option
def plugins_command(as_json: bool) -> None:
    """List installed durable plugins with their versions and hooks."""
    try:
        loaded = get_plugin_manager().plugins()
    except DurableError as exc:
        _fail(str(exc))
    if as_json:
        _emit_json([{"name": p.name, "version": p.version, "hooks": list(p.hooks)} for p in loaded])
        return
    table = _table("NAME", "VERSION", "HOOKS")
    for p in loaded:
        table.add_row(p.name, p.version or "-", ", ".join(p.hooks))
    _out().table(table)


@cli.command("stores")
@json_option
@click.option(
    "--check",
    "check_url",
    metavar="URL",
    help="Open the store at URL and say whether a restart of its server keeps its data (exit 1 if not).",
)
def stores_command(as_json: bool, check_url: str | None) -> None:
    """List the store backends installed plugins provide, or check one store (--check URL)."""
    if check_url is not None:
        _check_store(check_url, as_json)
        return
    try:
        backends = get_plugin_manager().backends()
    except DurableError as exc:
        _fail(str(exc))
    seen: dict[str, dict[str, Any]] = {}
    for backend, plugin in backends.values():
        seen.setdefault(
            backend.name,
            {
                "name": backend.name,
                "plugin": plugin,
                "schemes": list(backend.schemes),
                "capabilities": sorted(backend.capabilities),
                "description": backend.description,
                "install_hint": backend.install_hint,
            },
        )
    rows = sorted(seen.values(), key=lambda r: r["name"])
    if as_json:
        _emit_json(rows)
        return
    out = _out()
    for i, row in enumerate(rows):
        if i:
            out.line()
        out.line(_term.cell_text(f"{row['name']}  (plugin {row['plugin']})"), "bold")
        details = _facts()
        details.add_row("schemes", ", ".join(f"{s}://" for s in row["schemes"]))
        details.add_row("capabilities", ", ".join(row["capabilities"]) or "-")
        details.add_row("description", row["description"])
        details.add_row("install", row["install_hint"] or "-")
        out.table(details)


def _check_store(url: str, as_json: bool) -> None:
    """``stores --check URL``: open the store and print what a restart of its server keeps, as the
    store reports it (``durability()``, if it has one); exit status 1 when data is at risk."""
    store = _unopened_store(_store_url(url))

    async def check() -> tuple[bool | None, str]:
        logging.disable(logging.WARNING)  # the store's own warning is the line printed below
        try:
            await store.open()
        finally:
            logging.disable(logging.NOTSET)
        try:
            report = getattr(store, "durability", None)
            return report() if callable(report) else (None, "not reported by this store")
        finally:
            await store.close()

    keeps, line = _run(check)
    shown = redact_url(_store_url(url))
    if as_json:
        _emit_json({"store": shown, "opened": True, "restart_keeps_data": keeps, "durability": line})
    else:
        click.echo(_term.visible(f"{shown}: opened"))
        click.echo(_term.visible(f"durability: {line}"))
    if keeps is False:
        raise click.exceptions.Exit(1)


@cli.group("runs")
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
                lease_seconds=wf.lease_seconds,
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


@cli.command("replay")
@click.argument("target", metavar="MODULE[:ATTRIBUTE]")
@store_option
@click.option("--run", "run_ids", multiple=True, metavar="ID", help="Check this run (repeatable).")
@click.option("--workflow", "workflow_name", metavar="NAME", help="Only runs of this workflow.")
@click.option(
    "--status",
    "statuses",
    metavar="LIST",
    default="pending,running,waiting,interrupted,failed",
    show_default=True,
    help="Comma-separated statuses of the runs to check.",
)
@json_option
def replay_command(
    target: str,
    store_url: str | None,
    run_ids: Sequence[str],
    workflow_name: str | None,
    statuses: str,
    as_json: bool,
) -> None:
    """Check the code at MODULE:ATTRIBUTE against the runs recorded in the store, before deploying it.

    Each run's workflow body runs against its journal: recorded steps, signals, sleeps, patches and
    children return their recorded values, nothing executes and nothing is written. A run whose
    journal disagrees with the code is listed with the step at fault; exits 1 if there is one.
    The store is --store (or $DURABLE_STORE), else the Workflow's db=.
    """
    from durable._read_only_store import ReadOnlyStore

    try:
        chosen = frozenset(RunStatus(s.strip()) for s in statuses.split(",") if s.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; choose from {', '.join(STATUSES)}", param_hint="--status") from None
    app = _load_workflow(target)
    url = store_url or _app_store(app)
    if not isinstance(url, str):
        raise click.UsageError(f"no store given: pass --store URL or set {STORE_ENV}")

    async def act() -> Any:
        async with open_workflow(url) as (_, store):
            # Whatever the application's code reads through its Workflow reads this store, and
            # cannot write it.
            app.use_store(ReadOnlyStore(store))
            app._opened_on = asyncio.get_running_loop()
            return await app.check_replay(run_ids or None, workflow=workflow_name, statuses=chosen)

    report = _run(act)
    if as_json:
        _emit_json(
            {
                "ok": report.ok,
                "checked": len(report.results),
                "incompatible": len(report.incompatible),
                "runs": [r.to_json() for r in report.results],
            }
        )
    else:
        if report.results:
            table = _table("RUN ID", "WORKFLOW", "STATUS", "REPLAY", "STEP")
            for r in report.results:
                verdict: Cell = ("incompatible", "red") if not r.compatible else (r.outcome, "")
                table.add_row(r.run_id, r.workflow, _status(r.status), verdict, r.step_key or "")
            _out().table(table)
        for r in report.incompatible:
            click.echo(_term.visible(f"run {r.run_id!r}: {r.message}"))
        bad = len(report.incompatible)
        click.echo(
            f"{len(report.results)} run(s) checked: "
            + (f"{bad} incompatible with this code" if bad else "every one replays with this code")
        )
    if not report.ok:
        sys.exit(1)


@cli.command("signal")
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


@cli.command("ui")
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Answer requests for this host name too (repeatable); localhost and IP addresses always are.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any).")
@click.option(
    "--poll", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Refresh seconds."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@click.option(
    "--allow-actions",
    is_flag=True,
    help="Let the page cancel, resume and signal runs (each action logged on stderr).",
)
def ui_command(
    store_url: str | None,
    host: str,
    allowed_hosts: Sequence[str],
    port: int,
    poll: float,
    open_browser: bool,
    allow_actions: bool,
) -> None:
    """Serve a web page of runs and their step timelines (read-only without --allow-actions).

    With --allow-actions the page can cancel, resume and signal runs; a request acts only with
    this process's token and an Origin of the page itself, so another site cannot act.
    Requests naming another host than localhost, an IP address, --host or an --allowed-host
    are refused (also on --host 0.0.0.0), so no other web site can read runs through DNS
    rebinding: to reach the page by a name, pass it with --allowed-host. Behind an HTTPS proxy,
    a page of an --allowed-host name (https://NAME) may act whatever Host the proxy sends.
    """
    from durable._ui import UIServer

    target = _store_url(store_url)

    async def check() -> None:
        async with open_workflow(target):
            pass

    _run(check)  # fail here, with one line, rather than on the first page load
    try:
        server = UIServer(
            target,
            host=host,
            port=port,
            poll_interval=poll,
            allowed_hosts=allowed_hosts,
            allow_actions=allow_actions,
        )
        server.start()
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    except DurableError as exc:
        _fail(str(exc))
    shown = _term.visible(_inspect.redact_url(target))
    if allow_actions:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s durable ui: %(message)s"))
        logging.getLogger("durable.ui").addHandler(handler)
        logging.getLogger("durable.ui").setLevel(logging.INFO)
    mode = "actions allowed" if allow_actions else "read-only"
    click.echo(f"durable ui for {shown} at {server.url} ({mode}; Ctrl+C stops it)")
    names = sorted(server.allowed_hosts - {"localhost"})
    click.echo(
        "answers requests for localhost and IP addresses"
        + "".join(f", {n}" for n in names)
        + " (--allowed-host NAME for more)"
    )
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    # A service manager stops us with SIGTERM: close the store as cleanly as on Ctrl+C.
    _signals.signal(_signals.SIGTERM, lambda *_: server.request_stop())
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@cli.command("worker")
@click.argument("target", metavar="MODULE[:ATTRIBUTE]")
@click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help=f"Store URL; wins over the Workflow's db= and ${STORE_ENV}.",
)
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=16, show_default=True, help="Runs at once."
)
@click.option(
    "--poll", type=click.FloatRange(min=0.01), default=0.5, show_default=True, help="Seconds between polls."
)
@click.option(
    "-v", "--verbose", count=True, help="Log more: -v every step attempt, -vv every library's DEBUG too."
)
@click.option("-q", "--quiet", count=True, help="Log less: -q warnings and failed runs only, -qq errors.")
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Serve this queue (repeatable; 'default' is every workflow without queue=). Default: all.",
)
def worker_command(
    target: str,
    store_url: str | None,
    concurrency: int,
    poll: float,
    verbose: int,
    quiet: int,
    queues: tuple[str, ...],
) -> None:
    """Resume due runs of the Workflow at MODULE:ATTRIBUTE (e.g. app.jobs:wf) until Ctrl+C or SIGTERM.

    MODULE alone will do if it defines one Workflow. Start as many workers as you like, in
    any processes or hosts sharing the store. The store is --store if given, else the
    Workflow's db=, else $DURABLE_STORE; a worker whose Workflow sets db= to another store
    than $DURABLE_STORE refuses to start. Logs a line on stderr for each run it takes,
    finishes, fails or parks.
    """
    from durable import _worker_log

    wf = _load_workflow(target)
    chosen, note = _worker_store(wf, target, store_url)
    if chosen is not None:
        wf.use_store(chosen)
    level = min(max(logging.INFO + 10 * (quiet - verbose), logging.DEBUG), logging.CRITICAL)
    _worker_log.configure(level, libraries=level if verbose > 1 else None)
    log = _worker_log.log
    manager = get_plugin_manager()
    plugins: dict[str, object] = {"durable-worker-log": _worker_log.RunLog()}
    if level <= logging.DEBUG:
        plugins["durable-worker-steps"] = _worker_log.StepLog()

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (_signals.SIGTERM, _signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            store = await wf.get_store()
        except DurableError as exc:
            _fail(f"cannot open store {_describe_store(chosen or _app_store(wf) or wf)} ({note}): {exc}")
        try:
            worker = wf.worker(concurrency=concurrency, poll_interval=poll, queues=queues or None)
        except DurableError as exc:
            _fail(str(exc))
        names = ", ".join(sorted(wf.executor.workflows)) or "no workflows"
        names += f"; queues {', '.join(worker.dispatch.names)}"
        stops = "Ctrl+C or SIGTERM stops it"
        log.info("worker %s serving %s from %r (%s); %s", wf.owner, names, store, note, stops)
        if store.name == "memory":
            log.warning("memory:// is private to this process: the worker sees only runs started in it")
        try:
            await worker.run(stop)
        finally:
            await wf.close()
            log.info("worker %s stopped after taking %d run(s)", wf.owner, worker.resumed)

    for name, plugin in plugins.items():
        manager.register(plugin, name=name)
    try:
        _run(work)
    finally:
        for name in plugins:
            manager.unregister(name)


def _app_store(wf: Workflow) -> str | Store | None:
    """The store the application's ``Workflow(db=...)`` names; ``None`` when it kept the default."""
    store: Store | None = wf._store
    if store is not None:
        return store
    url: str | None = wf._store_url
    default = inspect.signature(Workflow).parameters["db"].default
    return None if url is None or url == as_store_url(default) else url


def _store_identity(db: str | Store) -> str | None:
    """What two spellings of one store share (a SQLite file's real path); ``None`` if unknown."""
    store = db
    if isinstance(db, str):
        try:
            store = get_plugin_manager().store_from_url(db)
        except Exception:
            return db
    path = getattr(store, "path", None)
    if isinstance(path, str) and path != ":memory:":
        return "sqlite:" + os.path.realpath(path)
    return db if isinstance(db, str) else None


def _describe_store(db: str | Store | Workflow) -> str:
    if isinstance(db, str):
        return _inspect.redact_url(db)
    return repr(db)


def _worker_store(wf: Workflow, target: str, option: str | None) -> tuple[str | None, str]:
    """The store URL ``durable worker`` switches ``wf`` to (``None``: keep its own), and where the
    choice came from. Refuses to guess between the application's ``db=`` and ``$DURABLE_STORE``."""
    env = os.environ.get(STORE_ENV, "").strip() or None
    app = _app_store(wf)
    if option:
        url = as_store_url(option)
        if app is not None and _store_identity(app) != _store_identity(url):
            return url, f"--store, instead of {target}'s db={_describe_store(app)}"
        return url, "--store"
    if env is None:
        return None, f"{target}'s db=" if app is not None else f"{target}'s default db"
    env_url = as_store_url(env)
    if app is None:
        return env_url, f"${STORE_ENV}"
    if _store_identity(app) == _store_identity(env_url):
        return None, f"{target}'s db=, the same as ${STORE_ENV}"
    _fail(
        f"which store should this worker serve? {target} sets db={_describe_store(app)} but "
        f"{STORE_ENV}={_describe_store(env_url)}; pass --store URL to choose one, or unset {STORE_ENV}"
    )


def _load_workflow(target: str) -> Workflow:
    import importlib

    module_name, colon, attribute = target.partition(":")
    if not module_name or (colon and not attribute):
        _fail(f"{target!r} is not MODULE:ATTRIBUTE (for example app.jobs:wf)")
    sys.path.insert(0, os.getcwd())  # as `python -m` would: the application is usually here
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        _fail(f"cannot import {module_name!r}: {exc}")
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(
            f"importing {module_name!r} raised {type(exc).__name__}: {exc} "
            f"(set {DEBUG_ENV}=1 for the traceback)"
        )
    found = sorted(name for name, value in vars(module).items() if isinstance(value, Workflow))
    listed = (
        "it defines no durable Workflow"
        if not found
        else "its durable Workflows: " + ", ".join(f"{module_name}:{name}" for name in found)
    )
    if not attribute:
        if len(found) == 1:
            wf: Workflow = getattr(module, found[0])
            return wf
        _fail(f"name the Workflow in {module_name!r} as MODULE:ATTRIBUTE; {listed}")
    value: Any = module
    for depth, part in enumerate(attribute.split(".")):
        if not hasattr(value, part):
            owner = module_name if depth == 0 else f"{module_name}:{'.'.join(attribute.split('.')[:depth])}"
            _fail(f"module {owner!r} has no attribute {part!r}; {listed}")
        value = getattr(value, part)
    if not isinstance(value, Workflow):
        _fail(f"{target!r} is a {type(value).__name__}, not a durable Workflow; {listed}")
    return value


from durable._queue_cli import register as _register_queue_commands  # noqa: E402 (it imports this module)

_register_queue_commands(cli)

from durable._stream_cli import print_outputs as _print_outputs  # noqa: E402 (as above)
from durable._stream_cli import register as _register_stream_command  # noqa: E402

_register_stream_command(cli)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="durable")
