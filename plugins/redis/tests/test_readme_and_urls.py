"""The seed README's Redis example, imports, and URLs with passwords against a real server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
import redis
from redis_test_kit import drop

from durable import Workflow


@pytest.fixture
def prefix(redis_url: str, session_prefix: str) -> Iterator[str]:
    chosen = f"{session_prefix}-readme-{secrets.token_hex(3)}"
    yield chosen
    drop(redis_url, chosen)


def test_both_import_paths_give_the_plugin_class() -> None:
    from durable import RedisStore as A
    from durable.redis_store import RedisStore as B
    from durable_redis import RedisStore as C

    assert A is B is C


def test_the_readme_example_works_unchanged_across_two_event_loops(redis_url: str, prefix: str) -> None:
    from durable import RedisStore

    store = RedisStore(url=redis_url, ttl=86400, prefix=prefix)
    wf = Workflow("my-app", db=store)
    calls: list[str] = []

    @wf.task
    async def fetch_data(source: str) -> dict[str, str]:
        calls.append(source)
        return {"source": source}

    @wf.workflow(id="pipeline-{source}")
    async def run_pipeline(source: str) -> str:
        data = await fetch_data(source)
        approval = await wf.signal("approve")
        return f"{data['source']}:{approval['ok']}"

    async def first() -> str:
        running = asyncio.ensure_future(run_pipeline(source="a"))
        await asyncio.sleep(0.3)
        assert await wf.complete("pipeline-a", "approve", {"ok": True}) is True
        result = await asyncio.wait_for(running, 10)
        await wf.close()
        return result

    assert asyncio.run(first()) == "a:True"
    # A second asyncio.run: the same store object reopens on the new loop; the run replays.
    assert asyncio.run(run_pipeline(source="a")) == "a:True"
    assert calls == ["a"]


def test_a_password_with_url_special_characters_works(redis_url: str, prefix: str) -> None:
    from durable_redis import RedisStore

    admin = redis.Redis.from_url(redis_url)
    user, password = f"durable-test-{secrets.token_hex(3)}", "p@ss:w/rd%?#" + secrets.token_hex(3)
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    try:
        parts = urlsplit(redis_url)
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 6379}"
        url = parts._replace(netloc=netloc).geturl()

        async def use() -> None:
            async with RedisStore(url, prefix=prefix) as store:
                assert await store.send_signal("r", "s", "", "1") is True
                assert password not in repr(store)

        asyncio.run(use())
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_durables_own_url_options_reach_the_store_and_not_redis_py() -> None:
    from durable_redis import RedisStore

    store = RedisStore.from_url(
        "redis://h:6379/2?prefix=app&ttl=60&require_persistence=1&operation_timeout=2.5&max_connections=7"
    )
    assert (store.prefix, store.ttl, store.require_persistence, store.operation_timeout) == (
        "app",
        60.0,
        True,
        2.5,
    )
    assert store.url == "redis://h:6379/2?max_connections=7"
    assert RedisStore.from_url("redis://h/0?require_persistence=0").require_persistence is False
    assert RedisStore.from_url("redis://h/0").operation_timeout == 5.0


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("require_persistence=maybe", "require_persistence must be 1 or 0"),
        ("operation_timeout=soon", "operation_timeout must be a number of seconds"),
        ("operation_timeout=0", "operation_timeout must be > 0 seconds"),
    ],
)
def test_bad_url_options_are_configuration_errors(query: str, error: str) -> None:
    from durable.errors import ConfigurationError
    from durable_redis import RedisStore

    with pytest.raises(ConfigurationError, match=error):
        RedisStore.from_url(f"redis://:pw@h/0?{query}")
