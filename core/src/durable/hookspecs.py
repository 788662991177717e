"""The hooks a durable plugin may implement.

A plugin is a module (or object) registered under the entry-point group ``durable``
whose functions are marked with ``durable.hookimpl``. Every hook is synchronous:
pluggy cannot await, and an ``async def`` implementation is rejected when the
plugin is registered. Stores are returned unopened; the core awaits ``open()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from durable.store import RunRecord, Store

PROJECT_NAME = "durable"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class StoreBackend:
    """A store a plugin offers, as ``durable stores`` lists it."""

    name: str
    """Short unique name, used by ``--durable-store NAME`` in the contract suite."""
    schemes: tuple[str, ...]
    """URL schemes it opens (``sqlite``, ``redis``, ...). Two backends may not share one."""
    description: str
    store_class: type[Store] | str
    """The store's class, or where it is as ``"module:Class"``. A plugin names it so, and declares
    ``capabilities`` itself, to keep its driver unimported until one of its stores is used:
    listing backends (every store URL resolution does) imports no driver. ``load_store_class()``
    gives the class either way."""
    install_hint: str = ""
    """What to install to get it, e.g. ``pip install 'python-durable[redis]'``."""
    capabilities: frozenset[str] = field(default_factory=frozenset)
    """Exactly ``store_class.capabilities`` (``durable stores`` shows these; the contract suite
    checks that the two agree). Declare the same frozenset object in both places if you can."""
    test_server: Callable[[], AbstractContextManager[str]] | None = None
    """For the contract suite: a context manager that starts (or finds) a throwaway server and
    yields its base URL. Used when ``DURABLE_TEST_<NAME>_URL`` is unset; may raise if it cannot."""
    isolated_url: Callable[[str, str], str] | None = None
    """For the contract suite: given a base URL and a unique token, a URL whose store shares no
    data with any other token's (a fresh schema, key prefix or file). Identity if ``None``."""
    drop_isolated: Callable[[str], Awaitable[None]] | None = None
    """For the contract suite: delete everything stored under a URL ``isolated_url`` made
    (drop the schema, delete the prefix's keys), so test runs leave nothing on a shared server."""

    def load_store_class(self) -> type[Store]:
        """``store_class``, imported now if it is named as ``"module:Class"``."""
        if not isinstance(self.store_class, str):
            return self.store_class
        module, _, name = self.store_class.partition(":")
        store_class: type[Store] = getattr(import_module(module), name)
        return store_class


@dataclass(frozen=True)
class TypeCodec:
    """Teaches the serialiser one more type.

    ``encode`` turns an instance into JSON-compatible data; ``decode`` rebuilds the
    instance from that data. ``tag`` is stored with the value and must be unique.
    """

    tag: str
    type: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


@hookspec
def durable_store_backends() -> Sequence[StoreBackend]:
    """Declare the store backends this plugin provides.

    Called once when plugins are loaded. The core reports two backends claiming one
    URL scheme as an error naming both plugins.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def durable_store_from_url(url: str, options: dict[str, Any]) -> Store | None:
    """Return an unopened store for ``url``, or ``None`` if the scheme is not yours.

    ``options`` holds the keyword arguments of a program calling
    ``get_plugin_manager().store_from_url(url, **options)`` itself; where a setting is in both,
    ``options`` wins over the URL's query string. ``Workflow(db=url)``, the CLI, workers, the
    viewer and the contract suite pass none (``{}``): every setting a store has must be
    expressible in its URL. The first non-``None`` result wins.
    """
    raise NotImplementedError


@hookspec
def durable_type_codecs() -> Sequence[TypeCodec]:
    """Extra types the checkpoint serialiser should round-trip."""
    raise NotImplementedError


@hookspec
def durable_run_context(workflow: str, run_id: str) -> dict[str, str] | None:
    """Propagation headers to store with a run being created (``RunRecord.context``), or ``None``.

    Called once per new run record (``start()``, ``enqueue``, a direct call, a child run, a
    fork), in the caller's task just before the store is written, so a tracer can read the
    caller's current trace (``opentelemetry.propagate.inject``). The core merges the ``str`` ->
    ``str`` headers of every plugin (the one registered last wins a shared header) and stores
    them as JSON text; no headers, no context. Whichever process executes the run gets them back
    as ``run.context`` in ``durable_run_started``, to continue the caller's trace. Where the
    store already holds the run (a resume, a duplicate start) its stored context stays and these
    headers are dropped. Must be cheap and must not raise: an exception is logged and the run is
    created without that plugin's headers.
    """
    raise NotImplementedError


# Observer hooks: called by the core as things happen, results ignored. They must be
# cheap and must not raise; an exception is logged and otherwise ignored.


@hookspec
def durable_run_started(workflow: str, run_id: str, resumed: bool, attempt: int, run: RunRecord) -> None:
    """A run began executing in this process (``resumed``: it had checkpoints already).

    ``attempt`` is the lease token this execution holds: 1 for a run's first execution, one more
    for each claim since (a resume, a worker taking it up, a parked run woken). ``run`` is the
    record this execution began with, just created or just claimed (``created_at``,
    ``deadline``, ``parent_run_id``, ``context``: the headers ``durable_run_context`` gave when
    it was created): what a tracer needs for the time from ``start()`` to the first execution, to
    continue the creator's trace and for links. Called in the task that executes the run, as are
    every step hook of the run and ``durable_run_finished``.
    """


@hookspec
def durable_run_finished(workflow: str, run_id: str, status: str, error: BaseException | None) -> None:
    """A run stopped executing in this process: ``completed``, ``failed``, ``cancelled``,
    ``waiting`` (parked) or ``running`` (interrupted)."""


@hookspec
def durable_step_started(run_id: str, key: str, task: str, attempt: int) -> None:
    """An attempt of a step began (not called for replayed steps)."""


@hookspec
def durable_step_retried(
    run_id: str, key: str, task: str, attempt: int, error: BaseException, delay: float
) -> None:
    """An attempt failed and the step will be tried again after ``delay`` seconds."""


@hookspec
def durable_step_finished(
    run_id: str, key: str, task: str, attempts: int, error: BaseException | None
) -> None:
    """A step's outcome was checkpointed (``error`` set when all attempts failed)."""


@hookspec
def durable_signal_delivered(run_id: str, name: str, delivery_id: str, recorded: bool) -> None:
    """``complete()`` delivered a signal (``recorded`` is False for a duplicate)."""
