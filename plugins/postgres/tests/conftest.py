"""Shared fixtures: the server under test (``DURABLE_TEST_POSTGRES_URL``) and a fresh schema per session."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
import pytest_asyncio

from durable_contract_tests import server_url
from durable_postgres import PostgresStore


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The server's base URL; tests needing it skip (or fail, in strict mode) when it is unset."""
    return server_url("postgres", "postgresql://postgres@127.0.0.1:5432/test")


async def _drop_schemas(url: str, prefix: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        names = await conn.fetch("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix)
        for (name,) in names:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def schema_prefix(pg_url: str) -> Iterator[str]:
    """This session's schema; tests needing more use it as a prefix. All are dropped at the end."""
    prefix = f"durable_pgtest_{os.getpid():x}_{secrets.token_hex(3)}"
    yield prefix
    asyncio.run(_drop_schemas(pg_url, prefix))


@pytest.fixture
def unique() -> str:
    """A fresh suffix for run ids and schema names, so tests sharing the session schema never collide."""
    return secrets.token_hex(4)


@pytest_asyncio.fixture
async def store(pg_url: str, schema_prefix: str) -> AsyncIterator[PostgresStore]:
    """An opened store on the session's schema."""
    opened = PostgresStore(pg_url, schema=schema_prefix)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest_asyncio.fixture
async def fresh(
    pg_url: str, schema_prefix: str, unique: str, request: pytest.FixtureRequest
) -> AsyncIterator[PostgresStore]:
    """A store on a schema of its own (named after the test module), dropped after: due runs,
    listings and queues see only this test's runs."""
    module = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    opened = PostgresStore(pg_url, schema=f"{schema_prefix}_{module[:12]}_{unique}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.drop_schema()
        await opened.close()


Terminate = Callable[[str], Awaitable[int]]


@pytest.fixture
def terminate(pg_url: str) -> Terminate:
    """``await terminate(name)`` runs ``pg_terminate_backend`` on every connection whose
    ``application_name`` is ``name`` and returns how many it killed."""

    async def kill(application_name: str) -> int:
        conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            killed = await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                application_name,
            )
            return int(killed)
        finally:
            await conn.close()

    return kill
