"""The store's schema: created once, migrated under a lock, never touched when it is not ours to change."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from durable.errors import StoreCorrupted
from durable_postgres import PostgresStore
from durable_postgres._schema import SCHEMA_VERSION

pytestmark = pytest.mark.asyncio


async def tables_of(url: str, schema: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.reltuples::int FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1",
            schema,
        )
        return [(r[0], r[1]) for r in rows]
    finally:
        await conn.close()


async def test_opening_creates_the_schema_with_its_version(pg_url: str, schema_prefix: str) -> None:
    schema = f"{schema_prefix}_fresh"
    async with PostgresStore(pg_url, schema=schema) as store:
        assert await store.get_run("nothing") is None
    conn = await asyncpg.connect(pg_url)
    try:
        versions = await conn.fetch(f'SELECT version FROM "{schema}".schema_version')
    finally:
        await conn.close()
    assert [v[0] for v in versions] == list(range(1, SCHEMA_VERSION + 1))  # each migration, once
    assert [name for name, _ in await tables_of(pg_url, schema)] == [
        "events",
        "queue_entries",
        "queue_open",
        "runs",
        "runs_live",
        "schema_version",
        "signals",
        "steps",
        "stream_items",
        "streams",
    ]


async def test_concurrent_starters_migrate_once(pg_url: str, schema_prefix: str) -> None:
    schema = f"{schema_prefix}_race"
    stores = [PostgresStore(pg_url, schema=schema, min_size=1, max_size=1) for _ in range(12)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        conn = await asyncpg.connect(pg_url)
        try:
            count = await conn.fetchval(f'SELECT count(*) FROM "{schema}".schema_version')
        finally:
            await conn.close()
        assert count == SCHEMA_VERSION  # one row per migration: each applied once
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_a_schema_from_a_newer_durable_is_refused_and_left_unchanged(
    pg_url: str, schema_prefix: str
) -> None:
    schema = f"{schema_prefix}_newer"
    async with PostgresStore(pg_url, schema=schema):
        pass
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (99)')
        before = await conn.fetch(f'SELECT version, applied_at FROM "{schema}".schema_version ORDER BY 1')
        with pytest.raises(StoreCorrupted, match="newer durable"):
            await PostgresStore(pg_url, schema=schema).open()
        after = await conn.fetch(f'SELECT version, applied_at FROM "{schema}".schema_version ORDER BY 1')
    finally:
        await conn.close()
    assert before == after


async def test_a_schema_of_another_application_is_refused_and_left_unchanged(
    pg_url: str, schema_prefix: str
) -> None:
    schema = f"{schema_prefix}_foreign"
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".runs (id int)')
        with pytest.raises(StoreCorrupted, match="did not create"):
            await PostgresStore(pg_url, schema=schema).open()
    finally:
        await conn.close()
    assert [name for name, _ in await tables_of(pg_url, schema)] == ["runs"]


async def test_a_password_with_url_special_characters_connects(pg_url: str, schema_prefix: str) -> None:
    # The test server trusts local connections, so this checks that parsing survives the password.
    host = pg_url.split("@", 1)[1] if "@" in pg_url else pg_url.split("://", 1)[1]
    user = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0] if "@" in pg_url else "postgres"
    url = f"postgres://{user}:p%40ss%3Aw%2Frd%23%3F%25@{host}"
    async with PostgresStore(url, schema=schema_prefix) as store:
        assert await store.get_run("nothing") is None


async def test_an_unreachable_server_fails_fast_with_store_unavailable() -> None:
    from durable.errors import StoreUnavailable

    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", retries=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreUnavailable, match="unreachable for 3 attempts"):
        await store.open()
    assert loop.time() - started < 5.0
