"""Events and streams (``Capability.STREAMS``): latest events, gapless ordered appends that a
``write_id`` makes idempotent, reads from any offset, closing, fencing, and readers woken by
writes. docs/STREAMS.md is the specification."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from durable import _streams
from durable.errors import LeaseLost
from durable.store import Capability, Lease, RunStatus, Store
from durable_contract_tests import _processes
from durable_contract_tests._base import ContractBase, StoreHarness, requires
from durable_contract_tests._kit import get, make_run, owned_run

WAIT_LIMIT = 10.0
"""No read in these tests should take this long; a store that hangs fails instead of blocking."""
PROMPT = 1.0
"""How soon a write must wake a waiting reader: far less than the readers' safety net (5 s)."""
WRITER_LIMIT = 20.0
"""How long the appending process of the cross-process test may take to start."""
SEND_ALLOWANCE = 0.5
"""What that process may take, once cued, to make its append (one store operation)."""
WRITERS = 4
APPENDS = 25
READERS = 3


async def _items(store: Store, run_id: str, key: str, offset: int = 0) -> list[tuple[int, Any]]:
    async def read() -> list[tuple[int, Any]]:
        return [item async for item in _streams.read_stream(store, run_id, key, offset, None)]

    return await asyncio.wait_for(read(), WAIT_LIMIT)


async def _stale(store: Store, run_id: str) -> Lease:
    """A lease of ``run_id`` that a later claim made stale (the run is then claimed again)."""
    lease = await owned_run(store, run_id)
    await store.update_run(lease, RunStatus.PENDING, release=True)
    assert await store.claim_run(run_id, "owner-b", 60.0) is not None
    return lease


class StreamContract(ContractBase, contract=True):
    """``set_event``, ``get_events``, ``append_stream``, ``close_stream``, ``read_stream`` and
    ``watch_output``. Each test names its capabilities (a mark on this class would reach every
    concern of ``StoreContract``)."""

    @requires(Capability.STREAMS)
    async def test_an_event_keeps_its_latest_value_per_key_and_run(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        other = await owned_run(store, "run-2")
        assert await store.get_events("run-1") == {}
        for done in range(3):
            await store.set_event(lease, "progress", json.dumps({"done": done}))
        await store.set_event(lease, "phase", '"load"')
        await store.set_event(other, "progress", '"other"')
        assert await store.get_events("run-1") == {"progress": '{"done": 2}', "phase": '"load"'}
        assert await store.get_events("run-2") == {"progress": '"other"'}
        assert await store.get_events("no-such-run") == {}

    @requires(Capability.STREAMS)
    async def test_appends_get_offsets_from_zero_in_order_and_read_from_any_offset(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        offsets = [await store.append_stream(lease, "log", json.dumps(f"line {i}")) for i in range(5)]
        assert offsets == [0, 1, 2, 3, 4]
        assert await store.append_stream(lease, "other", '"x"') == 0, "offsets are per stream key"
        whole = await store.read_stream("run-1", "log", 0)
        assert whole.items == [(i, json.dumps(f"line {i}")) for i in range(5)] and not whole.closed
        assert (await store.read_stream("run-1", "log", 3)).items == [(3, '"line 3"'), (4, '"line 4"')]
        assert (await store.read_stream("run-1", "log", 1, limit=2)).items == [
            (1, '"line 1"'),
            (2, '"line 2"'),
        ]
        assert (await store.read_stream("run-1", "log", 5)).items == []
        unknown = await store.read_stream("no-such-run", "log", 0)
        assert (unknown.items, unknown.closed) == ([], False)

    @requires(Capability.STREAMS)
    async def test_an_append_with_a_known_write_id_returns_its_offset_and_writes_nothing(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        assert await store.append_stream(lease, "log", '"a"', write_id="durable:stream@log") == 0
        assert await store.append_stream(lease, "log", '"b"') == 1
        assert await store.append_stream(lease, "log", '"a again"', write_id="durable:stream@log") == 0
        assert await store.append_stream(lease, "log", '"c"', write_id="durable:stream@log#1") == 2
        assert (await store.read_stream("run-1", "log", 0)).items == [(0, '"a"'), (1, '"b"'), (2, '"c"')]

    @requires(Capability.STREAMS)
    async def test_a_closed_stream_takes_no_item_and_says_it_is_closed(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.append_stream(lease, "log", '"a"', write_id="w0")
        await store.close_stream(lease, "log")
        await store.close_stream(lease, "log")  # twice is once
        assert await store.append_stream(lease, "log", '"late"') is None
        assert await store.append_stream(lease, "log", '"a"', write_id="w0") == 0, (
            "a repeated write id is answered with its offset even once the stream is closed (a replay)"
        )
        read = await store.read_stream("run-1", "log", 0)
        assert (read.items, read.closed) == ([(0, '"a"')], True)
        await store.close_stream(lease, "never-written")
        assert (await store.read_stream("run-1", "never-written", 0)).closed is True

    @requires(Capability.STREAMS)
    async def test_writes_with_a_stale_lease_are_refused_and_write_nothing(self, store: Store) -> None:
        stale = await _stale(store, "run-1")
        with pytest.raises(LeaseLost):
            await store.set_event(stale, "progress", "1")
        with pytest.raises(LeaseLost):
            await store.append_stream(stale, "log", "1")
        with pytest.raises(LeaseLost):
            await store.close_stream(stale, "log")
        assert await store.get_events("run-1") == {}
        read = await store.read_stream("run-1", "log", 0)
        assert (read.items, read.closed) == ([], False)

    @requires(Capability.STREAMS)
    async def test_values_come_back_as_the_exact_text_stored(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        big = json.dumps({"text": 'π≈3.14 ✓ "q" \\ \n' * 40_000}, ensure_ascii=False)  # ~0.8 MB
        odd = '{ "spaced" :  [1,  2.50] }'
        await store.set_event(lease, "big", big)
        await store.append_stream(lease, "log", big)
        await store.append_stream(lease, "log", odd)
        assert (await store.get_events("run-1"))["big"] == big
        assert (await store.read_stream("run-1", "log", 0)).items == [(0, big), (1, odd)]

    @requires(Capability.STREAMS)
    async def test_concurrent_appends_get_gapless_offsets_and_every_reader_the_same_order(
        self, store: Store, stores: StoreHarness
    ) -> None:
        lease = await owned_run(store, "run-1")
        objects = [store]
        if Capability.MULTI_PROCESS in store.capabilities:
            objects += [await stores.reopen(store) for _ in range(WRITERS - 1)]

        async def writer(w: int) -> list[int | None]:
            target = objects[w % len(objects)]
            return [await target.append_stream(lease, "log", json.dumps([w, i])) for i in range(APPENDS)]

        readers = [
            asyncio.ensure_future(_items(objects[r % len(objects)], "run-1", "log")) for r in range(READERS)
        ]
        written = await asyncio.gather(*(writer(w) for w in range(WRITERS)))
        await store.close_stream(lease, "log")
        given = [offset for offsets in written for offset in offsets]
        assert sorted(o for o in given if o is not None) == list(range(WRITERS * APPENDS)), (
            f"offsets must be 0..n-1, each given once: got {given}"
        )
        for offsets in written:
            assert offsets == sorted(o for o in offsets if o is not None), (
                "one writer's appends keep their order"
            )
        stored = (await store.read_stream("run-1", "log", 0, limit=10_000)).items
        seen = await asyncio.gather(*readers)
        for items in seen:
            assert [(at, json.dumps(value)) for at, value in items] == stored, (
                "every reader, from every store object, must see the stream's one order"
            )

    @requires(Capability.STREAMS)
    async def test_a_reader_resumes_from_the_offset_after_the_last_one_it_received(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        for i in range(6):
            await store.append_stream(lease, "log", json.dumps(i))
        await store.close_stream(lease, "log")
        first = []
        async for at, value in _streams.read_stream(store, "run-1", "log", 0, None):
            first.append((at, value))
            if at == 2:
                break  # a dropped connection
        rest = await _items(store, "run-1", "log", first[-1][0] + 1)
        assert first + rest == [(i, i) for i in range(6)]

    @requires(Capability.STREAMS)
    async def test_closing_a_stream_ends_every_waiting_reader(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.append_stream(lease, "log", '"a"')
        readers = [asyncio.ensure_future(_items(store, "run-1", "log")) for _ in range(READERS)]
        await asyncio.sleep(0.3)
        assert not any(reader.done() for reader in readers), "a reader of an open stream must wait"
        await store.append_stream(lease, "log", '"b"')
        await asyncio.sleep(0.3)  # the readers took "b" and wait again
        assert not any(reader.done() for reader in readers), "a reader of an open stream must wait"
        closed = time.monotonic()
        await store.close_stream(lease, "log")
        for reader in readers:
            assert await reader == [(0, "a"), (1, "b")]
        assert time.monotonic() - closed < PROMPT, "closing must wake readers, not their safety-net poll"

    @requires(Capability.STREAMS)
    async def test_a_run_reaching_a_final_status_ends_its_readers(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.append_stream(lease, "log", '"a"')
        reader = asyncio.ensure_future(_items(store, "run-1", "log"))
        await asyncio.sleep(0.3)
        assert not reader.done()
        ended = time.monotonic()
        await store.update_run(lease, RunStatus.COMPLETED, result="1", release=True)
        assert await reader == [(0, "a")]
        assert time.monotonic() - ended < PROMPT, "a final status must wake readers, not their poll"

    @requires(Capability.STREAMS)
    async def test_a_write_wakes_a_watcher_promptly(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        writes: list[Callable[[], Awaitable[object]]] = [
            lambda: store.set_event(lease, "progress", "1"),
            lambda: store.append_stream(lease, "log", "1"),
            lambda: store.close_stream(lease, "log"),
        ]
        for write in writes:
            async with store.watch_output("run-1") as watch:
                waiter = asyncio.ensure_future(watch.wait(WAIT_LIMIT))
                await asyncio.sleep(0.1)
                assert not waiter.done()
                sent = time.monotonic()
                await write()
                await asyncio.wait_for(waiter, WAIT_LIMIT)
                assert time.monotonic() - sent < PROMPT

    @requires(Capability.STREAMS)
    async def test_a_write_between_a_read_and_the_next_wait_is_not_missed(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        async with store.watch_output("run-1") as watch:
            assert (await store.read_stream("run-1", "log", 0)).items == []
            await store.append_stream(lease, "log", '"between"')
            started = time.monotonic()
            await watch.wait(WAIT_LIMIT)
            assert time.monotonic() - started < PROMPT, "the watch began before the write: it must be woken"

    @requires(Capability.STREAMS, Capability.NOTIFY, Capability.MULTI_PROCESS)
    async def test_a_write_through_another_store_object_wakes_a_reader_promptly(
        self, store: Store, stores: StoreHarness
    ) -> None:
        other = await stores.reopen(store)
        lease = await owned_run(store, "run-1")
        store.poll_interval = 3600.0
        reader = asyncio.ensure_future(_items(store, "run-1", "log"))
        await asyncio.sleep(0.5)
        sent = time.monotonic()
        await other.append_stream(lease, "log", '"pushed"')
        await other.close_stream(lease, "log")
        assert await reader == [(0, "pushed")]
        assert time.monotonic() - sent < PROMPT, (
            "a write through another store object over the same data must wake this object's readers "
            "through the store's notifications (a change watcher, LISTEN/NOTIFY, pub/sub), not a poll"
        )

    @requires(Capability.STREAMS, Capability.NOTIFY, Capability.MULTI_PROCESS)
    async def test_an_append_from_another_process_wakes_a_reader_promptly(
        self, store: Store, stores: StoreHarness
    ) -> None:
        lease = await owned_run(store, "run-1")
        store.poll_interval = 3600.0
        order = _processes.AppendOnCue(lease, "log")
        writer = await asyncio.create_subprocess_exec(
            *_processes.command(order, await stores.blueprint(store)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert writer.stdin is not None and writer.stdout is not None and writer.stderr is not None
        received: list[tuple[int, Any]] = []
        try:
            ready = await asyncio.wait_for(writer.stdout.readline(), WRITER_LIMIT)
            if ready.strip() != _processes.READY.encode():
                writer.kill()
                await writer.wait()
                raise AssertionError(
                    f"the appending process did not start: {(await writer.stderr.read()).decode()[-3000:]}"
                )
            reader = _streams.read_stream(store, "run-1", "log", 0, WAIT_LIMIT)
            for n in range(2):
                cued = time.monotonic()
                writer.stdin.write(b"go\n")
                await writer.stdin.drain()
                received.append(await asyncio.wait_for(anext(reader), WAIT_LIMIT))
                woken = time.monotonic() - cued
                assert woken < PROMPT + SEND_ALLOWANCE, (
                    f"item {n} reached the reader {woken:.2f} s after another process was told to append "
                    "it: by the safety-net poll, not a notification. A store declaring notify must wake "
                    "readers in every process sharing its data"
                )
            await reader.aclose()
        finally:
            if writer.returncode is None:
                writer.kill()
            await writer.wait()
        assert received == [(0, 0), (1, 1)]

    @requires(Capability.STREAMS, Capability.MULTI_PROCESS)
    async def test_events_and_streams_are_shared_by_every_store_object(
        self, store: Store, stores: StoreHarness
    ) -> None:
        other = await stores.reopen(store)
        lease = await owned_run(store, "run-1")
        await store.set_event(lease, "progress", "3")
        await store.append_stream(lease, "log", '"a"', write_id="w")
        assert await other.append_stream(lease, "log", '"a"', write_id="w") == 0
        assert await other.get_events("run-1") == {"progress": "3"}
        assert (await other.read_stream("run-1", "log", 0)).items == [(0, '"a"')]

    @requires(Capability.STREAMS)
    async def test_list_streams_gives_each_streams_length_and_whether_it_is_closed(
        self, store: Store
    ) -> None:
        lease = await owned_run(store, "run-1")
        listed = await store.list_streams("run-1")
        if listed is None:
            pytest.skip(f"{store!r} does not list streams (Store.list_streams is optional)")
        assert listed == {}
        await owned_run(store, "run-2")
        for value in ("1", "2", "3"):
            await store.append_stream(lease, "log", value)
        await store.close_stream(lease, "log")
        await store.append_stream(lease, "tokens", "1")
        await store.close_stream(lease, "never written")
        assert await store.list_streams("run-1") == {
            "log": (3, True),
            "tokens": (1, False),
            "never written": (0, True),
        }
        assert await store.list_streams("run-2") == {}
        assert await store.list_streams("no such run") == {}

    @requires(Capability.STREAMS)
    async def test_deleting_a_run_deletes_its_events_and_streams(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.set_event(lease, "progress", "1")
        await store.append_stream(lease, "log", "1")
        await store.close_stream(lease, "log")
        assert await store.delete_run("run-1") is True
        assert await store.get_events("run-1") == {}
        read = await store.read_stream("run-1", "log", 0)
        assert (read.items, read.closed) == ([], False)
        await store.create_run(make_run("run-1"))
        assert (await get(store, "run-1")).status is RunStatus.PENDING
        assert await store.get_events("run-1") == {}, "a new run of a deleted run's id starts with no events"
