"""Fixtures for the Redis store's own tests.

Server tests use ``DURABLE_TEST_REDIS_URL`` and skip with a reason when it is unset (they
fail instead with ``DURABLE_TEST_STRICT=1``). Each session works under one fresh random
key prefix and deletes every key under it at the end.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
import redis
from redis_test_kit import drop

from durable_contract_tests import server_url
from durable_redis import RedisStore

StoreMaker = Callable[..., RedisStore]


@pytest.fixture(scope="session")
def redis_url() -> str:
    return server_url("redis", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def session_prefix(redis_url: str) -> Iterator[str]:
    prefix = "durable-redis-test-" + secrets.token_hex(5)
    yield prefix
    drop(redis_url, prefix)


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client for inspecting keys, TTLs and connections."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest_asyncio.fixture
async def make_store(redis_url: str, session_prefix: str) -> AsyncIterator[StoreMaker]:
    """Unopened stores, each under its own prefix within the session's (or ``prefix=``'s)."""
    made: list[RedisStore] = []

    def make(*, prefix: str | None = None, url: str | None = None, **options: Any) -> RedisStore:
        chosen = prefix or f"{session_prefix}-{secrets.token_hex(4)}"
        store = RedisStore(url or redis_url, prefix=chosen, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest_asyncio.fixture
async def store(make_store: StoreMaker) -> RedisStore:
    opened = make_store()
    await opened.open()
    return opened
