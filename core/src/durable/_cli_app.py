"""``durable worker`` and ``durable replay``: the commands that import the application's Workflow
(MODULE[:ATTRIBUTE]) and run its code, and how they choose the store it serves."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal as _signals
import sys
from collections.abc import Sequence
from typing import Any

import click

from durable import _inspect, _term
from durable._cli_base import (
    DEBUG_ENV,
    STATUSES,
    STORE_ENV,
    _fail,
    _run,
    json_option,
    open_workflow,
    store_option,
)
from durable._cli_output import _emit_json, _out, _status, _table
from durable._plugins import as_store_url, get_plugin_manager
from durable._records import RunStatus
from durable._term import Cell
from durable.errors import DurableError
from durable.store import Store
from durable.workflow import Workflow

__all__ = ["register"]


@click.command("replay")
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


@click.command("worker")
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


def register(group: click.Group) -> None:
    group.add_command(replay_command)
    group.add_command(worker_command)
