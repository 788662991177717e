"""Named queues through the public API, on the memory, SQLite, Redis and Postgres stores: limits
across workers of one store, priorities, delays, partitions, debounce, pushed dispatch, the errors,
and ``durable queues``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable import ConfigurationError, RunConflictError, Workflow
from durable.store import Capability, RunStatus
from durable_memory import InMemoryStore

DURABLE = [sys.executable, "-c", "from durable.cli import main; main()"]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL of each store with queues in this repository (Redis: DURABLE_TEST_REDIS_URL,
    under a fresh key prefix, whose keys are deleted after; Postgres: DURABLE_TEST_POSTGRES_URL,
    in a fresh schema, dropped after)."""
    if request.param == "postgres":
        yield from _postgres_schema()
        return
    if request.param != "redis":
        yield "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'app.db'}"
        return
    redis = pytest.importorskip("redis")
    from durable_contract_tests import server_url

    base = server_url("redis", "redis://127.0.0.1:6379/0")
    prefix = f"durable-test-queues-{uuid.uuid4().hex[:12]}"
    yield f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    admin = redis.Redis.from_url(base)
    try:
        for key in admin.scan_iter(match=prefix + ":*", count=1000):
            admin.unlink(key)
    finally:
        admin.close()


def _postgres_schema() -> Iterator[str]:
    asyncpg = pytest.importorskip("asyncpg")
    from durable_contract_tests import server_url
    from durable_postgres._url import with_schema

    base = server_url("postgres", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"durable_test_queues_{uuid.uuid4().hex[:12]}"
    yield with_schema(base, schema)

    async def drop() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def spans_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    peak = now = 0
    for _, change in events:
        now += change
        peak = max(peak, now)
    return peak


def shop_app(store: InMemoryStore | str, spans: dict[str, list[tuple[float, float]]]) -> Workflow:
    """One process of an application: a queue of concurrency 2, one run at a time per worker."""
    app = Workflow("shop", db=store)
    app.queue("llm", concurrency=2, worker_concurrency=1)

    @app.task
    async def call(n: int) -> int:
        began = time.monotonic()
        await asyncio.sleep(0.03)
        spans.setdefault(app.owner, []).append((began, time.monotonic()))
        return n

    @app.workflow(id="job-{n}", queue="llm")
    async def job(n: int) -> int:
        return await call(n)

    return app


async def test_a_queue_limits_runs_across_workers_sharing_the_store(db: str) -> None:
    store = InMemoryStore() if db == "memory://" else db  # SQLite: three store objects over one file
    spans: dict[str, list[tuple[float, float]]] = {}
    apps = [shop_app(store, spans) for _ in range(3)]
    job = apps[0].executor.workflows["job"]
    run_ids = [await job.start(n=n) for n in range(12)]
    stop = asyncio.Event()
    workers = [asyncio.ensure_future(app.run_worker(stop=stop, poll_interval=0.05)) for app in apps]
    results = [await apps[0].wait_for(run_id, timeout=20) for run_id in run_ids]
    stop.set()
    await asyncio.gather(*workers)
    for app in apps:
        await app.close()
    everything = [span for per_worker in spans.values() for span in per_worker]
    assert results == list(range(12)) and len(everything) == 12
    assert spans_overlap(everything) == 2, "concurrency=2 across three workers"
    assert all(spans_overlap(s) == 1 for s in spans.values()), "worker_concurrency=1 in each worker"
    assert len(spans) >= 2, "one worker took every run"


async def test_priority_delay_partition_and_debounce_through_the_api(db: str) -> None:
    wf = Workflow("shop", db=db)
    wf.queue("llm", concurrency=1)
    order: list[str] = []

    @wf.workflow(id="summarise-{doc_id}", queue="llm")
    async def summarise(doc_id: str, rev: int = 0) -> str:
        order.append(f"{doc_id}:{rev}")
        return doc_id

    await summarise.start(doc_id="a")
    await summarise.options(priority=-5).start(doc_id="urgent")
    await summarise.options(delay=0.4).start(doc_id="late")
    await summarise.options(partition_key="tenant-7").start(doc_id="b")
    first = await summarise.options(debounce=0.3, debounce_key="doc-9").start(doc_id="9", rev=1)
    again = await summarise.options(debounce=0.3, debounce_key="doc-9").start(doc_id="9", rev=2)
    assert first == again and first.startswith("summarise-9~")
    entry = await wf.get_queued("summarise-b")
    assert entry is not None and (entry.queue, entry.partition_key, entry.priority) == ("llm", "tenant-7", 0)
    late = await wf.get_queued("summarise-late")
    assert late is not None and late.not_before - late.enqueued_at == pytest.approx(0.4)
    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.run_worker(stop=stop))
    assert await wf.wait_for(first, timeout=10) == "9"
    assert await wf.wait_for("summarise-late", timeout=10) == "late"
    stop.set()
    await worker
    assert order[:3] == ["urgent:0", "a:0", "b:0"], order
    assert sorted(order[3:]) == ["9:2", "late:0"], "the debounced run ran once, with the last inputs"
    assert (await wf.get_run(first)).status is RunStatus.COMPLETED  # type: ignore[union-attr]


async def test_an_enqueued_run_wakes_an_idle_worker_without_waiting_for_a_poll(db: str) -> None:
    wf = Workflow("shop", db=db)
    wf.queue("fast")

    @wf.workflow(id="ping-{n}", queue="fast")
    async def ping(n: int) -> int:
        return n

    @wf.workflow(id="plain-{n}")
    async def plain(n: int) -> int:
        return n

    stop = asyncio.Event()
    worker = asyncio.ensure_future(wf.run_worker(stop=stop, poll_interval=30.0))
    await asyncio.sleep(0.2)  # idle: its poll found nothing and it waits
    for fn in (ping, plain):
        sent = time.monotonic()
        assert await wf.wait_for(await fn.start(n=1), timeout=5) == 1
        assert time.monotonic() - sent < 1.0, f"{fn.name}: a 30 s poll, not a wake-up, started it"
    stop.set()
    await worker


async def test_workers_serve_only_the_queues_they_are_given(db: str) -> None:
    wf = Workflow("shop", db=db)
    wf.queue("llm")

    @wf.workflow(id="q-{n}", queue="llm")
    async def on_queue(n: int) -> int:
        return n

    @wf.workflow(id="d-{n}")
    async def on_default(n: int) -> int:
        return n

    await on_queue.start(n=1)
    await on_default.start(n=1)
    assert await wf.worker(queues=["default"]).poll_once() == 1
    assert (await wf.get_run("q-1")).status is RunStatus.PENDING  # type: ignore[union-attr]
    assert await wf.worker(queues=["llm"]).poll_once() == 1
    assert wf.worker().dispatch.names == ("llm", "default")
    with pytest.raises(
        ConfigurationError, match=r"queue 'nope' is not declared in this code \(declared: llm"
    ):
        wf.worker(queues=["nope"])


async def test_a_direct_call_of_a_queued_workflow_runs_in_the_caller_at_once(db: str) -> None:
    wf = Workflow("shop", db=db)
    wf.queue("llm", concurrency=1)

    @wf.workflow(id="s-{n}", queue="llm")
    async def summarise(n: int) -> int:
        return n * 2

    assert await summarise(n=4) == 8  # no worker: executed by the caller, as before
    assert await wf.get_queued("s-4") is None


def test_a_store_without_the_capability_is_named_in_the_error(tmp_path: Path) -> None:
    pytest.importorskip("durable_example_store")  # a store without queues (examples/third_party_store)
    wf = Workflow("shop", db=f"jsonfile:///{tmp_path / 'app.json'}")
    with pytest.raises(
        ConfigurationError, match=r"wf.queue\('llm'\) needs a store with the 'queues' capability"
    ) as err:
        wf.queue("llm")
    assert "jsonfile store jsonfile:///" in str(err.value) and "app.json" in str(err.value)


async def test_options_and_limits_are_checked() -> None:
    wf = Workflow("shop", db="memory://")
    for bad in (
        {"concurrency": 0},
        {"rate_limit": (5,)},
        {"rate_limit": (5, 0)},
        {"worker_concurrency": True},
    ):
        with pytest.raises(ConfigurationError, match="queue 'x'"):
            wf.queue("x", **bad)  # type: ignore[arg-type]
    wf.queue("llm", concurrency=2)
    with pytest.raises(ConfigurationError, match="declared twice with other limits"):
        wf.queue("llm", concurrency=3)
    assert wf.queue("llm", concurrency=2).concurrency == 2
    with pytest.raises(ConfigurationError, match="queue 'gpu' is not declared; declare it first"):

        @wf.workflow(queue="gpu")
        async def nowhere() -> None: ...

    @wf.workflow(id="p-{n}")
    async def plain(n: int) -> None: ...

    with pytest.raises(ConfigurationError, match="workflow 'plain' is on no queue: priority"):
        await plain.options(delay=5).start(n=1)
    assert await plain.options().start(n=1) == "p-1"

    @wf.workflow(id="s-{n}", queue="llm")
    async def summarise(n: int) -> None: ...

    for options, message in (
        ({"priority": 1.5}, "priority must be an int"),
        ({"delay": -1}, "delay must be seconds >= 0"),
        ({"debounce": 1, "delay": 2}, "cannot be combined"),
        ({"debounce_key": "k"}, "debounce_key needs debounce"),
        ({"partition_key": ""}, "partition_key must be a non-empty str"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            summarise.options(**options)  # type: ignore[arg-type]


async def test_a_debounce_key_of_another_workflow_is_a_conflict() -> None:
    wf = Workflow("shop", db="memory://")
    wf.queue("q")

    @wf.workflow(queue="q")
    async def one(x: int) -> None: ...

    @wf.workflow(queue="q")
    async def two(x: int) -> None: ...

    held = await one.options(debounce=30, debounce_key="k").start(x=1)
    with pytest.raises(
        RunConflictError, match=f"debounce key 'k' on queue 'q' is held by pending run '{held}'"
    ):
        await two.options(debounce=30, debounce_key="k").start(x=1)


async def test_declaring_the_default_queue_puts_every_workflow_without_queue_on_it() -> None:
    wf = Workflow("shop", db="memory://")
    wf.queue("default", concurrency=1)

    @wf.workflow(id="j-{n}")
    async def job(n: int) -> int:
        return n

    await job.options(priority=1).start(n=1)
    entry = await wf.get_queued("j-1")
    assert entry is not None and entry.queue == "default"
    assert InMemoryStore.capabilities >= {Capability.QUEUES}


def test_durable_queues_lists_limits_and_counts(tmp_path: Path) -> None:
    app = tmp_path / "qapp.py"
    app.write_text(
        textwrap.dedent(
            """
            from durable import Workflow
            wf = Workflow("shop", db="memory://")
            wf.queue(
                "llm", concurrency=10, worker_concurrency=2, rate_limit=(50, 60.0), partition_concurrency=2
            )
            wf.queue("default")
            """
        )
    )
    result = subprocess.run(
        [*DURABLE, "queues", "qapp:wf", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["queue"] for row in rows] == ["default", "llm"]
    llm = rows[1]
    assert (llm["concurrency"], llm["worker_concurrency"], llm["partition_concurrency"]) == (10, 2, 2)
    assert (llm["rate_limit"], llm["queued"], llm["running"], llm["started_in_window"]) == (
        [50, 60.0],
        0,
        0,
        0,
    )
    table = subprocess.run([*DURABLE, "queues", "qapp:wf"], cwd=tmp_path, capture_output=True, text=True)
    assert table.returncode == 0 and "0/50 per 60s" in table.stdout, table.stdout + table.stderr
    plain = subprocess.run(
        [*DURABLE, "queues", "--store", f"sqlite:///{tmp_path / 'x.db'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 1 and "error:" in plain.stderr
