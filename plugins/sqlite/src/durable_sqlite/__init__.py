"""SQLite store for durable, the default: ``sqlite:///path.db`` or a bare path."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from durable.hookspecs import StoreBackend, hookimpl
from durable.store import Store
from durable_sqlite._store import SQLiteStore

__all__ = ["SQLiteStore"]


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
            store_class=SQLiteStore,
            install_hint="pip install python-durable",
            capabilities=SQLiteStore.capabilities,
            test_server=_temporary_directory,
            isolated_url=_isolated_url,
        )
    ]


@hookimpl
def durable_store_from_url(url: str, options: dict[str, Any]) -> Store | None:
    if not url.lower().startswith("sqlite:"):
        return None
    return SQLiteStore.from_url(url, **options)
