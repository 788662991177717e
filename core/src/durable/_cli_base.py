"""What every ``durable`` command shares: its failures, its event loop, its store and options.

A failure is a ``CLIError``: one ``error: ...`` line on stderr, status 1, with store URLs'
secrets removed. ``_run`` runs a command's coroutine and turns whatever it raises into one;
``open_workflow`` opens the store a command names, never creating it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import click

from durable import _inspect, _term
from durable._inspect import FINISHED
from durable._plugins import as_store_url, get_plugin_manager
from durable._records import RunStatus
from durable.errors import DurableError, StoreNotFound
from durable.store import Store, accepts_create, redact_text
from durable.workflow import Workflow

T = TypeVar("T")

STORE_ENV = "DURABLE_STORE"
DEBUG_ENV = "DURABLE_DEBUG"
OPEN_TIMEOUT_ENV = "DURABLE_OPEN_TIMEOUT"
STATUSES = [str(s) for s in RunStatus]
FINISHED_NAMES = sorted(str(s) for s in FINISHED)


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


store_option = click.option(
    "--store",
    "store_url",
    envvar=STORE_ENV,
    metavar="URL",
    help=f"Store URL (sqlite:///durable.db, memory://, redis://..., postgresql://...); default ${STORE_ENV}.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
