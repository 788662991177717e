"""Events and streams through the public API (issue 18), on the memory store: exactly-once writes
from a workflow body under replay (also when a checkpoint was lost), at-least-once from a task
body, latest-event reads that wait, live reads that end, resume, push, prune, and the errors."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from durable import ConfigurationError, SerializationError, UnknownRunError, Workflow
from durable.store import Capability, RunStatus
from durable_memory import InMemoryStore


class CountingStore(InMemoryStore):
    """Counts the store's event and stream writes (the side-effect log of these tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []

    async def set_event(self, lease: Any, key: str, value: str) -> None:
        self.writes.append(("event", key))
        await super().set_event(lease, key, value)

    async def append_stream(
        self, lease: Any, key: str, value: str, *, write_id: str | None = None
    ) -> int | None:
        self.writes.append(("append", key))
        return await super().append_stream(lease, key, value, write_id=write_id)


class NoStreamsStore(InMemoryStore):
    capabilities = InMemoryStore.capabilities - {Capability.STREAMS}


def importer(store: InMemoryStore, fail_at: set[int]) -> tuple[Workflow, Any]:
    """A workflow writing an event and a stream item per row; ``fail_at`` rows fail once."""
    wf = Workflow("imports", db=store)

    @wf.task(retries=0)
    async def load(i: int) -> int:
        if i in fail_at:
            fail_at.discard(i)
            raise RuntimeError(f"row {i} failed")
        return i

    @wf.workflow(id="import-{job}")
    async def import_job(job: str, rows: int) -> int:
        for i in range(rows):
            await load(i)
            await wf.set_event("progress", {"done": i + 1, "total": rows})
            await wf.write_stream("log", f"loaded row {i}")
        await wf.close_stream("log")
        return rows

    return wf, import_job


async def test_a_resumed_run_does_not_write_its_events_and_stream_items_again() -> None:
    store = CountingStore()
    wf, import_job = importer(store, fail_at={3})
    with pytest.raises(RuntimeError, match="row 3"):
        await import_job(job="1", rows=5)
    assert store.writes == [("event", "progress"), ("append", "log")] * 3
    assert await wf.resume("import-1") == 5
    assert store.writes == [("event", "progress"), ("append", "log")] * 5, "rows 0-2 were written again"
    items = [item async for item in wf.read_stream("import-1", "log")]
    assert items == [(i, f"loaded row {i}") for i in range(5)]
    assert await wf.get_events("import-1") == {"progress": {"done": 5, "total": 5}}


async def test_an_append_whose_checkpoint_was_lost_is_not_appended_again() -> None:
    # A crash between the append and its checkpoint: the journal lacks the step, the stream has
    # the item. The replayed append carries the same write id, and the store answers with it.
    store = CountingStore()
    wf, import_job = importer(store, fail_at={2})
    with pytest.raises(RuntimeError):
        await import_job(job="1", rows=3)
    del store._steps["import-1"]["durable:stream@log#1"]
    assert await wf.resume("import-1") == 3
    assert store.writes.count(("append", "log")) == 4  # rows 0, 1, 1 again (deduplicated), 2
    items = [item async for item in wf.read_stream("import-1", "log")]
    assert items == [(0, "loaded row 0"), (1, "loaded row 1"), (2, "loaded row 2")]


async def test_a_write_from_a_task_body_happens_again_when_the_task_is_retried() -> None:
    store = CountingStore()
    wf = Workflow("tasks", db=store)
    attempts = []

    @wf.task(retries=1)
    async def fetch() -> str:
        attempts.append(1)
        await wf.write_stream("log", f"attempt {len(attempts)}")
        await wf.set_event("attempt", len(attempts))
        if len(attempts) == 1:
            raise RuntimeError("flaky")
        return "ok"

    @wf.workflow(id="fetch-1")
    async def flow() -> str:
        return await fetch()

    assert await flow() == "ok"
    assert store.writes == [("append", "log"), ("event", "attempt")] * 2  # at least once
    assert [item async for item in wf.read_stream("fetch-1", "log")] == [(0, "attempt 1"), (1, "attempt 2")]
    assert await wf.get_event("fetch-1", "attempt") == 2
    assert [s.key for s in await wf.get_steps("fetch-1")] == ["fetch"], "task-body writes are not steps"


def gated(store: InMemoryStore) -> tuple[Workflow, Any]:
    """A workflow that writes, then waits for signal ``go`` before each further write."""
    wf = Workflow("gated", db=store)

    @wf.workflow(id="gated-{n}")
    async def flow(n: int) -> None:
        await wf.write_stream("log", 0)
        for i in range(1, n):
            await wf.signal("go")
            await wf.set_event("at", i)
            await wf.write_stream("log", i)

    return wf, flow


async def test_get_event_waits_for_a_first_value_and_returns_the_default_on_timeout() -> None:
    wf, flow = gated(InMemoryStore())
    run = asyncio.ensure_future(flow(n=3))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert await wf.get_event("gated-3", "at", timeout=0.2) is None
    assert await wf.get_event("gated-3", "at", timeout=0, default="none") == "none"
    assert time.monotonic() - started >= 0.2
    waiter = asyncio.ensure_future(wf.get_event("gated-3", "at", timeout=10))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await wf.complete("gated-3", "go", delivery_id="1")
    assert await asyncio.wait_for(waiter, 5) == 1
    await wf.complete("gated-3", "go", delivery_id="2")
    await asyncio.wait_for(run, 5)
    assert await wf.get_event("gated-3", "at") == 2, "the latest value"
    # A finished run that never set the event: the default at once, whatever the timeout.
    started = time.monotonic()
    assert await wf.get_event("gated-3", "never", timeout=None, default=0) == 0
    assert time.monotonic() - started < 1.0


async def test_a_live_reader_is_pushed_each_item_and_ends_when_the_run_finishes() -> None:
    store = InMemoryStore()
    store.poll_interval = 3600.0
    wf, flow = gated(store)
    run = asyncio.ensure_future(flow(n=3))
    await asyncio.sleep(0.05)
    received: list[tuple[int, Any, float]] = []

    async def read() -> None:
        async for offset, value in wf.read_stream("gated-3", "log"):
            received.append((offset, value, time.monotonic()))

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.2)
    assert [(o, v) for o, v, _ in received] == [(0, 0)]
    for delivery in ("1", "2"):
        sent = time.monotonic()
        await wf.complete("gated-3", "go", delivery_id=delivery)
        while len(received) < int(delivery) + 1:
            await asyncio.sleep(0.01)
        assert received[-1][2] - sent < 1.0, "pushed by the write, not found by the 5 s safety net"
    await asyncio.wait_for(run, 5)
    await asyncio.wait_for(reader, 2)  # never closed: the run's end ends the reader
    assert [(o, v) for o, v, _ in received] == [(0, 0), (1, 1), (2, 2)]


async def test_a_reader_resumes_from_an_offset_and_an_idle_timeout_ends_it() -> None:
    wf, flow = gated(InMemoryStore())
    run = asyncio.ensure_future(flow(n=3))
    await asyncio.sleep(0.05)
    await wf.complete("gated-3", "go", delivery_id="1")
    await asyncio.sleep(0.05)
    assert [item async for item in wf.read_stream("gated-3", "log", offset=1, timeout=0.2)] == [(1, 1)]
    started = time.monotonic()
    assert [item async for item in wf.read_stream("gated-3", "log", offset=2, timeout=0.2)] == []
    assert 0.2 <= time.monotonic() - started < 2.0
    await wf.complete("gated-3", "go", delivery_id="2")
    await asyncio.wait_for(run, 5)
    assert [item async for item in wf.read_stream("gated-3", "log", offset=2)] == [(2, 2)]


async def test_prune_deletes_events_and_streams_with_their_run() -> None:
    store = InMemoryStore()
    wf, import_job = importer(store, fail_at=set())
    await import_job(job="1", rows=2)
    assert await store.get_events("import-1") != {}
    assert await wf.prune(0) == 1
    assert await store.get_events("import-1") == {}
    assert (await store.read_stream("import-1", "log", 0)).items == []
    with pytest.raises(UnknownRunError, match="import-1"):
        await wf.get_event("import-1", "progress")


async def test_a_store_without_the_capability_is_refused_naming_it_and_the_capability() -> None:
    wf = Workflow("plain", db=NoStreamsStore())

    @wf.workflow(id="plain-1")
    async def flow() -> None:
        await wf.write_stream("log", 1)

    with pytest.raises(ConfigurationError, match=r"plain-1.*NoStreamsStore.*'streams' capability"):
        await flow()
    assert (await wf.get_run("plain-1")).status is RunStatus.FAILED  # type: ignore[union-attr]
    for read in (
        lambda: wf.get_events("plain-1"),
        lambda: wf.get_event("plain-1", "x"),
        lambda: anext(wf.read_stream("plain-1", "log")),
    ):
        with pytest.raises(ConfigurationError, match=r"NoStreamsStore.*'streams' capability"):
            await read()


async def test_bad_calls_are_refused_with_the_run_and_key() -> None:
    wf = Workflow("bad", db=InMemoryStore())
    with pytest.raises(ConfigurationError, match="inside a workflow run"):
        await wf.set_event("progress", 1)
    with pytest.raises(ConfigurationError, match="inside a workflow run"):
        await wf.write_stream("log", 1)

    @wf.workflow(id="bad-{case}")
    async def flow(case: str) -> None:
        if case == "key":
            await wf.set_event("", 1)
        elif case == "value":
            await wf.write_stream("log", object())
        else:
            await wf.write_stream("log", 1)
            await wf.close_stream("log")
            await wf.write_stream("log", 2)

    with pytest.raises(ConfigurationError, match="bad-key"):
        await flow(case="key")
    with pytest.raises(SerializationError, match=r"bad-value.*stream 'log'"):
        await flow(case="value")
    with pytest.raises(ConfigurationError, match=r"bad-closed.*'log'.*closed"):
        await flow(case="closed")
    with pytest.raises(UnknownRunError, match="no-such-run"):
        await anext(wf.read_stream("no-such-run", "log"))
    with pytest.raises(ConfigurationError, match="offset"):
        await anext(wf.read_stream("bad-closed", "log", offset=-1))
    with pytest.raises(ConfigurationError, match="timeout"):
        await wf.get_event("bad-closed", "x", timeout=-1)


async def test_a_replay_check_replays_the_writes_without_writing() -> None:
    store = CountingStore()
    wf, import_job = importer(store, fail_at=set())
    await import_job(job="1", rows=3)
    writes = list(store.writes)
    report = await wf.check_replay(["import-1"], statuses=[RunStatus.COMPLETED])
    assert report.ok, report
    assert store.writes == writes, "a replay check writes nothing"


async def test_a_fork_writes_its_own_events_and_stream_items() -> None:
    store = InMemoryStore()
    wf, import_job = importer(store, fail_at=set())
    await import_job(job="1", rows=3)
    fork_id = await wf.fork("import-1", from_step="load#2", new_run_id="import-1-again")
    assert await wf.resume(fork_id) == 3
    items = [item async for item in wf.read_stream(fork_id, "log")]
    assert items == [(i, f"loaded row {i}") for i in range(3)]
    assert await wf.get_events(fork_id) == {"progress": {"done": 3, "total": 3}}
    assert len([item async for item in wf.read_stream("import-1", "log")]) == 3, "the original is only read"


async def test_the_timeline_names_the_body_s_writes_by_kind() -> None:
    from durable import _inspect

    store = InMemoryStore()
    wf, import_job = importer(store, set())
    async with wf:
        await import_job("kinds", rows=1)
        timeline = await _inspect.load_timeline(store, "import-kinds")
    assert [(s.key, s.kind) for s in timeline.steps] == [
        ("load", "task"), ("durable:event@progress", "event"), ("durable:stream@log", "stream"),
        ("durable:close@log", "close"),
    ]  # fmt: skip


@pytest.mark.parametrize("db", ["memory", "sqlite"])
async def test_a_reader_of_a_run_that_failed_ends_after_its_last_item(db: str, tmp_path: Any) -> None:
    wf = Workflow("fails", db=InMemoryStore() if db == "memory" else f"sqlite:///{tmp_path / 'f.db'}")

    @wf.task(retries=0)
    async def boom() -> None:
        raise RuntimeError("boom")

    @wf.workflow(id="fails-{n}")
    async def fails(n: int) -> None:
        await wf.write_stream("log", "before")
        await boom()

    async with wf:
        with pytest.raises(RuntimeError):
            await fails(1)

        async def read() -> list[tuple[int, Any]]:
            return [item async for item in wf.read_stream("fails-1", "log")]  # no timeout

        # Before: a reader of a failed run with no timeout waited for ever.
        assert await asyncio.wait_for(read(), 10) == [(0, "before")]
        assert await wf.get_event("fails-1", "never", default="none") == "none"
