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
