"""Events and streams on Postgres beyond the contract: the NOTIFY payloads SQL and Python compute
alike, appends under lost replies, racing write ids and takeovers, the triggers that wake readers
when a run ends or is deleted (in any statement, from any store object), and the cascade."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from postgres_test_kit import RowGate, claimed_and_released, owned, pending, recording

from durable import _streams
from durable.errors import LeaseLost
from durable.store import Lease, RunStatus
from durable_postgres import PostgresStore
from durable_postgres._listener import channel_name
from durable_postgres._output_sql import channel_sql, key_sql, output_key

pytestmark = pytest.mark.asyncio

PROMPT = 1.0
"""How soon a reader must be woken: far less than its safety-net re-read (5 s)."""
Terminate = Callable[[str], Awaitable[int]]


@pytest.fixture
async def second(pg_url: str, schema_prefix: str) -> AsyncIterator[PostgresStore]:
    """Another store object on the same schema: another process, as far as the server can tell."""
    other = PostgresStore(pg_url, schema=schema_prefix)
    await other.open()
    yield other
    await other.close()


async def mine(store: PostgresStore, run_id: str) -> Lease:
    """A new running run owned by ``me`` under token 1, and its lease."""
    await store.create_run(owned(run_id))
    return Lease(run_id, "me", 1, 0.0)


async def test_sql_computes_the_payload_and_channel_python_listens_for(pg_url: str) -> None:
    run_ids = ["r", "ünïcødé/run ✓", "x" * 10_000, "with 'quote' and \\ backslash"]
    schemas = ["durable", "s" * 47, "s" * 48, "ü" * 30, "ü" * 40]  # around the 63-byte limit
    conn = await asyncpg.connect(pg_url)
    try:
        for run_id in run_ids:
            assert await conn.fetchval(f"SELECT {key_sql('$1::text')}", run_id) == output_key(run_id)
        for schema in schemas:
            assert await conn.fetchval(f"SELECT {channel_sql('$1::text')}", schema) == channel_name(schema)
    finally:
        await conn.close()
    assert all(len(channel_name(schema).encode()) <= 63 for schema in schemas)


async def test_an_append_whose_reply_was_lost_is_stored_once(store: PostgresStore, unique: str) -> None:
    lease = await mine(store, f"lost-{unique}")
    append = store._outputs._sql["append"]
    with recording(store) as pool:
        pool.fail_after = append
        assert await store.append_stream(lease, "log", '"once"') == 0
    assert pool.statements.count(append) == 2  # committed, reply lost, sent again: found, not added
    assert await store.append_stream(lease, "log", '"next"') == 1
    assert (await store.read_stream(lease.run_id, "log", 0)).items == [(0, '"once"'), (1, '"next"')]


async def test_appends_racing_with_one_write_id_store_one_item_and_both_get_its_offset(
    store: PostgresStore, second: PostgresStore, unique: str
) -> None:
    # Both statements take their snapshot before either commits (they queue behind a lock on the
    # run's row), so neither sees the other's item: the second to take the stream's row violates
    # the write id's uniqueness, and starts again.
    lease = await mine(store, f"ids-{unique}")
    await store.append_stream(lease, "log", '"first"')
    append = store._outputs._sql["append"]
    with recording(store) as pool, recording(second) as other:
        async with RowGate(store, lease.run_id) as gate:
            one = asyncio.ensure_future(store.append_stream(lease, "log", '"a"', write_id="w"))
            await gate.queued(1)
            two = asyncio.ensure_future(second.append_stream(lease, "log", '"a"', write_id="w"))
            await gate.queued(2)
            await gate.open()
            offsets = await asyncio.gather(one, two)
    assert offsets == [1, 1]
    assert (await store.read_stream(lease.run_id, "log", 0)).items == [(0, '"first"'), (1, '"a"')]
    # Whichever took the stream's row second sent its append again (the shared locks on the run's
    # row are granted together, so either may).
    assert pool.statements.count(append) + other.statements.count(append) == 3
    assert await store.append_stream(lease, "log", '"b"') == 2, "no offset was lost to the race"


async def test_an_append_racing_a_takeover_is_refused_exactly_when_the_takeover_wins(
    store: PostgresStore, second: PostgresStore, unique: str
) -> None:
    for i in range(10):
        run_id = f"race-{unique}-{i}"
        old = await claimed_and_released(store, run_id)
        append_first = i % 2 == 0

        async def takeover(run_id: str = run_id) -> list[tuple[int, str]] | None:
            if await second.claim_run(run_id, "new", 60.0) is None:
                return None
            return (await second.read_stream(run_id, "log", 0)).items

        async with RowGate(store, run_id) as gate:
            append = store.append_stream(old, "log", '"old"')
            first, then = (append, takeover()) if append_first else (takeover(), append)
            first_task = asyncio.ensure_future(first)
            await gate.queued(1)
            then_task = asyncio.ensure_future(then)
            await gate.queued(2)
            await gate.open()
            done = await asyncio.gather(first_task, then_task, return_exceptions=True)
        appended, seen = done if append_first else done[::-1]
        if append_first:
            assert (appended, seen) == (0, [(0, '"old"')])
        else:
            assert isinstance(appended, LeaseLost) and seen == [], (appended, seen)
        stored = (await second.read_stream(run_id, "log", 0)).items
        assert stored == ([(0, '"old"')] if append_first else [])


async def _ended(store: PostgresStore, run_id: str) -> list[tuple[int, Any]]:
    return [item async for item in _streams.read_stream(store, run_id, "log", 0, None)]


@pytest.mark.parametrize("end", ["complete", "cancel", "delete"])
async def test_a_run_ended_through_another_store_object_ends_its_readers_promptly(
    store: PostgresStore, second: PostgresStore, unique: str, end: str
) -> None:
    run_id = f"end-{end}-{unique}"
    await store.create_run(pending(run_id))
    lease = await store.claim_run(run_id, "me", 60.0)
    assert lease is not None
    await store.append_stream(lease, "log", '"a"')
    if end == "cancel":  # parked, no owner: a cancel ends it at once
        await store.update_run(lease, RunStatus.WAITING, release=True)
    reader = asyncio.ensure_future(asyncio.wait_for(_ended(store, run_id), 10.0))
    await asyncio.sleep(0.5)
    assert not reader.done()
    sent = time.monotonic()
    if end == "complete":
        await second.update_run(lease, RunStatus.COMPLETED, result="1", release=True)
    elif end == "cancel":
        cancelled = await second.request_cancel(run_id)
        assert cancelled is not None and cancelled.status is RunStatus.CANCELLED
    else:
        assert await second.delete_run(run_id)
    assert await reader == [(0, "a")]
    assert time.monotonic() - sent < PROMPT, "woken by the safety net, not the NOTIFY"


async def test_only_runs_with_outputs_notify_when_they_end_and_only_live_runs_when_deleted(
    store: PostgresStore, unique: str
) -> None:
    # NOTIFYs are delivered in commit order: what arrives before the last one is all there is.
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(store._target.dsn, user=store._target.user)
    await conn.add_listener(store._channel, lambda *args: heard.put_nowait(args[3]))
    try:
        plain, used, finished, live = [await mine(store, f"{name}-{unique}") for name in "abcd"]
        await store.set_event(used, "progress", "1")
        await store.update_run(plain, RunStatus.COMPLETED, result="1", release=True)
        await store.update_run(used, RunStatus.COMPLETED, result="1", release=True)
        await store.update_run(finished, RunStatus.FAILED, error='"x"', release=True)
        assert await store.delete_run(finished.run_id)
        assert await store.delete_run(live.run_id)
        payloads = [await asyncio.wait_for(heard.get(), 10.0) for _ in range(3)]
    finally:
        await conn.close()
    sender = store._listener.sender if store._listener else None
    assert payloads == [
        f"{output_key(used.run_id)}/{sender}",
        output_key(used.run_id),
        output_key(live.run_id),
    ]


async def test_deleting_a_run_by_hand_deletes_its_events_and_streams(
    store: PostgresStore, unique: str
) -> None:
    lease = await mine(store, f"hand-{unique}")
    await store.set_event(lease, "progress", "1")
    await store.append_stream(lease, "log", "1", write_id="w")
    await store.close_stream(lease, "other")
    s = store._quoted

    async def delete(conn: Any) -> list[int]:
        await conn.execute(f"DELETE FROM {s}.runs WHERE run_id = $1", lease.run_id)
        return [
            await conn.fetchval(f"SELECT count(*) FROM {s}.{table} WHERE run_id = $1", lease.run_id)
            for table in ("events", "streams", "stream_items")
        ]

    assert await store._call("delete by hand", delete) == [0, 0, 0]


async def test_a_reader_is_woken_promptly_again_after_its_listen_connection_was_killed(
    pg_url: str, schema_prefix: str, unique: str, terminate: Terminate
) -> None:
    reading_app = f"dpg-read-{unique}"
    joined = "&" if "?" in pg_url else "?"
    async with (
        PostgresStore(f"{pg_url}{joined}schema={schema_prefix}&application_name={reading_app}") as reading,
        PostgresStore(pg_url, schema=schema_prefix) as writing,
    ):
        lease = await mine(writing, f"relisten-{unique}")
        received: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

        async def read() -> None:
            async for item in _streams.read_stream(reading, lease.run_id, "log", 0, None):
                received.put_nowait(item)

        reader = asyncio.ensure_future(read())
        try:
            await asyncio.sleep(0.3)
            await writing.append_stream(lease, "log", "0")
            assert await asyncio.wait_for(received.get(), 10.0) == (0, 0)
            assert await terminate(reading_app) >= 1  # its LISTEN connection and its pool's
            await asyncio.sleep(1.5)  # the reader re-read (every waiter does on a loss) and relistened
            assert reading._listener is not None and reading._listener.healthy
            sent = time.monotonic()
            await writing.append_stream(lease, "log", "1")
            assert await asyncio.wait_for(received.get(), 10.0) == (1, 1)
            assert time.monotonic() - sent < PROMPT, "woken by the safety net: the watch did not LISTEN again"
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
