"""Connection loss on a real server: killed backends, a vanished server, a dropped LISTEN connection."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest
from network_faults import Proxy
from postgres_test_kit import owned

from durable import Workflow
from durable.backoff import constant
from durable.errors import StoreUnavailable
from durable.store import Lease, RunStatus, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio

Terminate = Callable[[str], Awaitable[int]]


def url_for(pg_url: str, schema: str, app: str, **extra: object) -> str:
    options = "&".join(
        [f"schema={schema}", f"application_name={app}", *(f"{k}={v}" for k, v in extra.items())]
    )
    return f"{pg_url}{'&' if '?' in pg_url else '?'}{options}"


def step(run_id: str, key: str) -> StepRecord:
    now = time.time()
    return StepRecord(run_id, key, "task", "args", StepStatus.COMPLETED, f'"{key}"', None, 1, now, now)


async def test_every_operation_after_its_connections_were_killed_succeeds(
    pg_url: str, schema_prefix: str, unique: str, terminate: Terminate
) -> None:
    app = f"dpg-kill-{unique}"
    async with PostgresStore(url_for(pg_url, schema_prefix, app), min_size=3) as store:
        run_id = f"killed-{unique}"
        await store.create_run(owned(run_id))
        lease = Lease(run_id, "me", 1, 0.0)
        operations: list[Callable[[], Awaitable[object]]] = [
            lambda: store.get_run(run_id),
            lambda: store.save_step(lease, step(run_id, "a")),
            lambda: store.load_steps(run_id),
            lambda: store.send_signal(run_id, "go", "", "1"),
            lambda: store.wait_for_signal(run_id, "go", 0, 1.0),
            lambda: store.renew_lease(lease, 60.0),
            lambda: store.update_run(lease, RunStatus.RUNNING),
        ]
        for operation in operations:
            assert await terminate(app) >= 1
            await operation()
        assert [s.key for s in await store.load_steps(run_id)] == ["a"]
        assert [s.payload for s in await store.list_signals(run_id)] == ["1"]


async def test_operations_racing_a_killer_succeed_or_raise_store_unavailable(
    pg_url: str, schema_prefix: str, unique: str, terminate: Terminate
) -> None:
    app = f"dpg-race-{unique}"
    async with PostgresStore(url_for(pg_url, schema_prefix, app), max_size=5) as store:
        stop = asyncio.Event()

        async def killer() -> int:
            kills = 0
            while not stop.is_set():
                kills += await terminate(app)
                await asyncio.sleep(0.01)
            return kills

        outcomes: Counter[str] = Counter()

        async def worker(n: int) -> None:
            run_id = f"race-{unique}-{n}"
            for _ in range(20):
                try:
                    stored, _ = await store.create_run(owned(run_id))
                    lease = Lease(run_id, "me", stored.lease_token, 0.0)
                    for i in range(10):
                        await store.save_step(lease, step(run_id, f"s{i}"))
                        await store.send_signal(run_id, "tick", f"t{i}", str(i))
                    outcomes["finished"] += 1
                    return
                except StoreUnavailable:
                    outcomes["unavailable"] += 1
            raise AssertionError(f"worker {n} never finished: {outcomes}")

        kill_task = asyncio.ensure_future(killer())
        try:
            await asyncio.gather(*(worker(n) for n in range(8)))
        finally:
            stop.set()
            kills = await kill_task
        assert kills > 0 and outcomes["finished"] == 8
        for n in range(8):
            run_id = f"race-{unique}-{n}"
            assert [s.key for s in await store.load_steps(run_id)] == [f"s{i}" for i in range(10)]
            assert [s.delivery_id for s in await store.list_signals(run_id)] == [f"t{i}" for i in range(10)]


async def test_a_workflow_survives_its_connections_being_killed_without_re_executing_steps(
    pg_url: str, schema_prefix: str, unique: str, terminate: Terminate
) -> None:
    app = f"dpg-wf-{unique}"
    executed: Counter[str] = Counter()
    wf = Workflow("killed", db=PostgresStore(url_for(pg_url, schema_prefix, app)), default_retries=0)

    @wf.task
    async def work(i: int) -> int:
        executed[f"work{i}"] += 1
        await asyncio.sleep(0.003)
        return i * i

    @wf.workflow(id="killed-{tag}")
    async def pipeline(tag: str) -> int:
        total = 0
        for i in range(30):
            total += await work(i)
        return total

    stop = asyncio.Event()

    async def killer() -> int:
        kills = 0
        while not stop.is_set():
            kills += await terminate(app)
            await asyncio.sleep(0.02)
        return kills

    failures = 0
    async with wf:
        # The schema first: its creation (some 200 ms of DDL) cannot finish with a connection
        # killed every 20 ms, and fails as StoreUnavailable at open. Steps are what is tested.
        await wf.get_store()
        kill_task = asyncio.ensure_future(killer())
        try:
            for _ in range(10):
                try:
                    result = await pipeline(tag=unique)
                    break
                except StoreUnavailable:
                    failures += 1
            else:
                raise AssertionError("the workflow never finished")
        finally:
            stop.set()
            kills = await kill_task
    assert result == sum(i * i for i in range(30))
    assert kills > 0
    # A step runs again only if its checkpoint never committed, which needs a failed call.
    assert sum(executed.values()) - 30 <= failures
    assert set(executed) == {f"work{i}" for i in range(30)}


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[Proxy]:
    parts = urlsplit(pg_url.replace("postgresql+asyncpg://", "postgresql://"))
    running = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await running.start()
    yield running
    await running.stop()


def through(pg_url: str, proxy: Proxy, schema: str) -> str:
    parts = urlsplit(pg_url)
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{userinfo}127.0.0.1:{proxy.port}{parts.path}?schema={schema}&retries=2"


async def test_a_workflow_whose_store_is_gone_fails_clearly_and_resumes_later(
    pg_url: str, schema_prefix: str, unique: str, proxy: Proxy
) -> None:
    executed: Counter[str] = Counter()
    gate = asyncio.Event()
    wf = Workflow(
        "outage", db=through(pg_url, proxy, schema_prefix), default_retries=0, default_backoff=constant(0)
    )

    @wf.task
    async def before() -> str:
        executed["before"] += 1
        return "a"

    @wf.task
    async def during() -> str:
        executed["during"] += 1
        await gate.wait()
        return "b"

    @wf.task
    async def after() -> str:
        executed["after"] += 1
        return "c"

    @wf.workflow(id="outage-{tag}")
    async def flow(tag: str) -> str:
        return await before() + await during() + await after()

    async with wf:
        first = asyncio.ensure_future(flow(tag=unique))
        while not executed["during"]:
            await asyncio.sleep(0.01)
        await proxy.stop()  # the server vanishes while `during` runs
        gate.set()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await asyncio.wait_for(first, 60)
        assert time.monotonic() - started < 60
        await proxy.start()
        assert await flow(tag=unique) == "abc"
    # `during` ran again because its checkpoint never reached the server; `before` never did.
    assert executed == Counter(before=1, during=2, after=1)


async def test_a_waiter_gets_its_signal_after_the_listen_connection_was_killed(
    pg_url: str, schema_prefix: str, unique: str, terminate: Terminate
) -> None:
    waiting_app, sending_app = f"dpg-wait-{unique}", f"dpg-send-{unique}"
    async with (
        PostgresStore(url_for(pg_url, schema_prefix, waiting_app)) as waiting,
        PostgresStore(url_for(pg_url, schema_prefix, sending_app)) as sending,
    ):
        run_id = f"listen-{unique}"
        waiter = asyncio.ensure_future(waiting.wait_for_signal(run_id, "go", 0, 20.0))
        await asyncio.sleep(0.2)
        assert waiting._listener is not None and waiting._listener.healthy
        assert await terminate(waiting_app) >= 1
        await asyncio.sleep(0.2)
        await sending.send_signal(run_id, "go", "", '"after the drop"')
        found = await asyncio.wait_for(waiter, 20.0)
        assert found is not None and found.payload == '"after the drop"'
        # The listener comes back: the next wait is woken by NOTIFY again, promptly.
        waiter = asyncio.ensure_future(waiting.wait_for_signal(run_id, "go", 1, 20.0))
        await asyncio.sleep(1.5)
        assert waiting._listener.healthy
        sent = time.monotonic()
        await sending.send_signal(run_id, "go", "second", '"second"')
        found = await asyncio.wait_for(waiter, 20.0)
        assert found is not None and time.monotonic() - sent < 0.5
