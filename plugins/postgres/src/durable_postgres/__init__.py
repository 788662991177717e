"""PostgreSQL store for durable: ``postgresql://user:password@host:5432/database?schema=durable``."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from durable.hookspecs import StoreBackend, hookimpl
from durable.store import Capability, Store
from durable_postgres._url import SCHEMES, is_postgres_url, quote_identifier, with_schema

if TYPE_CHECKING:
    from durable_postgres._store import PostgresStore

__all__ = ["PostgresStore"]

TEST_IMAGE = "postgres:16-alpine"
CAPABILITIES = frozenset(
    {
        Capability.PERSISTENT,
        Capability.MULTI_PROCESS,
        Capability.NOTIFY,
        Capability.MULTI_HOST,
        Capability.STREAMS,
        Capability.QUEUES,
    }
)
"""``PostgresStore.capabilities``, declared here so that listing backends does not import asyncpg."""


def __getattr__(name: str) -> Any:
    # The entry point loads this module for every Workflow(); asyncpg is imported only when a
    # Postgres store is used.
    if name == "PostgresStore":
        from durable_postgres._store import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'durable_postgres' has no attribute {name!r}")


@contextmanager
def _test_server() -> Iterator[str]:
    # Imported here: testcontainers is a test-only dependency.
    postgres = importlib.import_module("testcontainers.community.postgres")
    with postgres.PostgresContainer(TEST_IMAGE, driver=None) as container:
        yield str(container.get_connection_url())


def _isolated_url(base_url: str, token: str) -> str:
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in token.lower())
    return with_schema(base_url, f"durable_test_{safe}"[:63])


async def _drop_isolated(url: str) -> None:
    """Drop the schema an isolated test URL names (the contract suite's clean-up)."""
    from durable_postgres._store import PostgresStore

    store = PostgresStore.from_url(url)
    conn = await store._connect()
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(store.schema)} CASCADE")
    finally:
        await conn.close()


@hookimpl
def durable_store_backends() -> list[StoreBackend]:
    return [
        StoreBackend(
            name="postgres",
            schemes=SCHEMES,
            description="PostgreSQL (asyncpg): many processes on many hosts; LISTEN/NOTIFY signal wake-ups.",
            store_class="durable_postgres._store:PostgresStore",
            install_hint="pip install 'python-durable[postgres]'",
            capabilities=CAPABILITIES,
            test_server=_test_server,
            isolated_url=_isolated_url,
            drop_isolated=_drop_isolated,
        )
    ]


@hookimpl
def durable_store_from_url(url: str, options: dict[str, Any]) -> Store | None:
    if not is_postgres_url(url):
        return None
    from durable_postgres._store import PostgresStore

    return PostgresStore.from_url(url, **options)
