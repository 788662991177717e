"""Events and streams on Redis beyond the contract (issue 18): the keys that hold them, their TTL
with the run's, streams whose names look alike kept apart, a damaged stream reported, and the
final status, cancel and deletion made through another store object waking readers over
pub/sub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis
from redis_test_kit import StoreMaker, lease_of, new_run

from durable import _streams
from durable.errors import StoreCorrupted
from durable.store import RunStatus
from durable_redis import RedisStore

PROMPT = 1.0
"""Far less than a reader's safety net (5 s): the write woke it, not a re-read."""


async def test_a_runs_events_and_streams_are_three_keys_in_its_slot_that_count_down_with_it(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store(ttl=120)
    await store.open()
    run = new_run("r")
    await store.create_run(run)
    await store.set_event(lease_of(run), "progress", "1")
    await store.append_stream(lease_of(run), "log", '"a"')
    keys = store.keys.output_keys("r")
    for key in keys:
        assert key.startswith(store.keys.run_keys("r")[0][: -len("run")])  # the run's braces: its slot
        assert admin.exists(key) and admin.ttl(key) == -1, "a live run's outputs never expire"
    await store.update_run(lease_of(run), RunStatus.COMPLETED, result="1")
    assert all(0 < admin.ttl(key) <= 120 for key in keys)
    await store.close_stream(lease_of(run), "late")  # still the current token: a late write counts down too
    assert 0 < admin.ttl(keys[1]) <= 120

    assert await store.delete_run("r")
    assert not any(admin.exists(key) for key in keys)


async def test_a_reset_run_keeps_its_outputs_forever_again(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store(ttl=120)
    await store.open()
    run = new_run("r")
    await store.create_run(run)
    await store.set_event(lease_of(run), "progress", "1")
    await store.update_run(lease_of(run), RunStatus.CANCELLED, release=True)
    assert admin.ttl(store.keys.output_keys("r")[0]) > 0
    assert await store.reset_run("r") is not None
    assert admin.ttl(store.keys.output_keys("r")[0]) == -1
    assert await store.get_events("r") == {"progress": "1"}


async def test_streams_whose_names_look_alike_are_kept_apart(store: RedisStore) -> None:
    run = new_run("r")
    await store.create_run(run)
    lease = lease_of(run)
    names = ["a", "a1", "1:a", "a:", "i1:a", "π"]
    for n in range(11):
        await store.append_stream(lease, "a", str(n), write_id=f"w{n}")
    for name in names[1:]:
        assert await store.append_stream(lease, name, f'"{name}"', write_id="w1") == 0
    await store.close_stream(lease, "a1")
    assert (await store.read_stream("r", "a", 10)).items == [(10, "10")]
    assert await store.append_stream(lease, "a", '"x"', write_id="w1") == 1
    for name in names[1:]:
        read = await store.read_stream("r", name, 0)
        assert (read.items, read.closed) == ([(0, f'"{name}"')], name == "a1")
    assert not (await store.read_stream("r", "a", 0)).closed
    assert await store.list_streams("r") == {
        "a": (11, False),
        **{name: (1, name == "a1") for name in names[1:]},
    }


async def test_a_read_from_far_past_the_end_or_a_negative_offset(store: RedisStore) -> None:
    run = new_run("r")
    await store.create_run(run)
    for n in range(1200):  # more than one HMGET page of the read script
        await store.append_stream(lease_of(run), "log", str(n))
    read = await store.read_stream("r", "log", 0, limit=5000)
    assert read.items == [(n, str(n)) for n in range(1200)]
    assert (await store.read_stream("r", "log", 1199)).items == [(1199, "1199")]
    assert (await store.read_stream("r", "log", 10**9)).items == []
    assert (await store.read_stream("r", "log", -3, limit=2)).items == [(0, "0"), (1, "1")]
    assert (await store.read_stream("r", "log", 0, limit=0)).items == []


async def test_a_missing_item_is_reported_as_corrupt_naming_the_stream(
    store: RedisStore, admin: redis.Redis
) -> None:
    run = new_run("r")
    await store.create_run(run)
    for n in range(3):
        await store.append_stream(lease_of(run), "log", str(n))
    admin.hdel(store.keys.output_keys("r")[2], "i3:log1")  # hand-edited
    with pytest.raises(StoreCorrupted, match="log") as raised:
        await store.read_stream("r", "log", 0)
    assert raised.value.run_id == "r"


async def _ended_promptly(reader_store: RedisStore, end: Callable[[], Awaitable[object]]) -> float:
    reader_store.poll_interval = 3600.0

    async def items() -> list[object]:
        return [item async for item in _streams.read_stream(reader_store, "r", "log", 0, None)]

    reader = asyncio.ensure_future(items())
    await asyncio.sleep(0.5)
    assert not reader.done()
    sent = time.monotonic()
    await end()
    await asyncio.wait_for(reader, 10)
    return time.monotonic() - sent


@pytest.mark.parametrize("how", ["completed", "cancelled", "deleted"])
async def test_a_final_status_or_deletion_through_another_store_object_ends_readers_promptly(
    make_store: StoreMaker, how: str
) -> None:
    reader_store = make_store()
    writer = make_store(prefix=reader_store.prefix)
    await reader_store.open()
    await writer.open()
    run = new_run("r", owner=None if how == "cancelled" else "owner-a")
    await writer.create_run(run)
    ends: dict[str, Callable[[], Awaitable[object]]] = {
        "completed": lambda: writer.update_run(lease_of(run), RunStatus.COMPLETED, result="1", release=True),
        "cancelled": lambda: writer.request_cancel("r"),
        "deleted": lambda: writer.delete_run("r"),
    }
    assert await _ended_promptly(reader_store, ends[how]) < PROMPT
