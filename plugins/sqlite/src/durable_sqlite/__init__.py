"""SQLite store for durable, the default: ``sqlite:///path.db`` or a bare path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from durable.hookspecs import StoreBackend, hookimpl
from durable.store import Capability, Store

if TYPE_CHECKING:
    from durable_sqlite._store import SQLiteStore

__all__ = ["SQLiteStore"]

CAPABILITIES = frozenset(
    {
        Capability.PERSISTENT,
        Capability.MULTI_PROCESS,
        Capability.NOTIFY,
        Capability.QUEUES,
        Capability.STREAMS,
    }
)
"""``SQLiteStore.capabilities``, declared here so that listing backends does not import aiosqlite.
``notify``: waiters are woken by the change watcher (``_watcher``), which reads one pragma of the
file, not by polling the data; the contract's cross-process wake-up tests hold it to that."""


def __getattr__(name: str) -> Any:
    # The entry point loads this module for every Workflow(); aiosqlite is imported only when an
    # SQLite store is used.
    if name == "SQLiteStore":
        from durable_sqlite._store import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module 'durable_sqlite' has no attribute {name!r}")


@contextmanager
def _temporary_directory() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="durable-sqlite-") as directory:
        yield "sqlite:///" + directory


def _isolated_url(base_url: str, token: str) -> str:
    directory = base_url.removeprefix("sqlite:///")
    return "sqlite:///" + os.path.join(directory, f"{token}.db")


@hookimpl
def durable_store_backends() -> list[StoreBackend]:
    return [
        StoreBackend(
            name="sqlite",
            schemes=("sqlite",),
            description="One SQLite file (WAL); several processes on one host may share it.",
            store_class="durable_sqlite._store:SQLiteStore",
            install_hint="pip install python-durable",
            capabilities=CAPABILITIES,
            test_server=_temporary_directory,
            isolated_url=_isolated_url,
        )
    ]


@hookimpl
def durable_store_from_url(url: str, options: dict[str, Any]) -> Store | None:
    if not url.lower().startswith("sqlite:"):
        return None
    from durable_sqlite._store import SQLiteStore

    return SQLiteStore.from_url(url, **options)
