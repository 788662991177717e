"""Partitions and connections that die silently, on Postgres (issue 15: every round trip has a
timeout, a partitioned owner notices it lost its leases, a worker carries on once the network heals).

Each test puts a TCP proxy (``redis_test_kit.Proxy``: it forwards bytes, whatever the protocol)
between the store and a PostgreSQL server of its own (``servers.PostgresServer``). ``cut`` stops
forwarding without closing anything (a partition: nothing arrives, nothing fails), ``heal``
forwards again, delivering what was held, ``forget`` makes the open connections silent for good
while new ones work (a NAT, or a server that forgot them without a reset).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from network_faults import OpenedStores, Proxy, timed
from postgres_test_kit import owned
from servers import PostgresServer

from durable import Workflow
from durable.errors import StoreUnavailable
from durable.store import Lease, RunQuery, RunStatus, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    if not (PostgresServer.BIN / "initdb").exists() and shutil.which("initdb") is None:
        pytest.skip("PostgreSQL's initdb is not installed")
    postgres = PostgresServer()
    postgres.init()
    postgres.start()
    yield postgres
    postgres.stop()
    postgres.remove()


@pytest.fixture
async def proxy(server: PostgresServer) -> AsyncIterator[Proxy]:
    front = Proxy("127.0.0.1", server.port)
    await front.start()
    yield front
    front.heal()
    await front.stop()


def through(proxy: Proxy, **options: object) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres" + (f"?{query}" if query else "")


@pytest.fixture
async def stores() -> AsyncIterator[OpenedStores]:
    opened = OpenedStores()
    yield opened
    await opened.close()


async def opened(stores: OpenedStores, url: str, **options: Any) -> PostgresStore:
    return await stores.open(PostgresStore(url, **options))


def step(run_id: str, key: str) -> StepRecord:
    now = time.time()
    return StepRecord(run_id, key, "task", "args", StepStatus.COMPLETED, '"ok"', None, 1, now, now)


# -- every round trip has a timeout ---------------------------------------------------------


async def test_every_operation_across_a_partition_fails_within_its_timeout_and_works_after_healing(
    proxy: Proxy, stores: OpenedStores
) -> None:
    store = await opened(stores, through(proxy, operation_timeout=1.0, schema="cut"))
    await store.create_run(owned("cut-off"))
    lease = Lease("cut-off", "me", 1, 0.0)
    await store.get_run("cut-off")
    proxy.cut()
    operations: dict[str, Callable[[], Awaitable[Any]]] = {
        "get_run": lambda: store.get_run("cut-off"),
        "create_run": lambda: store.create_run(owned("another")),
        "claim_run": lambda: store.claim_run("cut-off", "other", 15.0),
        "renew_lease": lambda: store.renew_lease(lease, 15.0),
        "update_run": lambda: store.update_run(lease, RunStatus.RUNNING),
        "save_step": lambda: store.save_step(lease, step("cut-off", "a")),
        "load_steps": lambda: store.load_steps("cut-off"),
        "due_runs": lambda: store.due_runs(time.time()),
        "list_runs": lambda: store.list_runs(RunQuery()),
        "send_signal": lambda: store.send_signal("cut-off", "go", "", "1"),
        "list_signals": lambda: store.list_signals("cut-off"),
    }
    for name, operation in operations.items():
        took, raised = await timed(operation())
        assert isinstance(raised, StoreUnavailable), (name, raised)
        assert 0.9 <= took < 1.6, (name, took)
        assert "no answer within 0.5 s per attempt (operation_timeout=1" in str(raised), raised
    proxy.heal()
    took, raised = await timed(store.get_run("cut-off"))
    assert raised is None and took < 0.5, (took, raised)  # fresh connections: the cut ones were dropped
    took, raised = await timed(store.save_step(lease, step("cut-off", "b")))
    assert raised is None and took < 0.5, (took, raised)


async def test_the_default_bound_is_ten_seconds(proxy: Proxy, stores: OpenedStores) -> None:
    store = await opened(stores, through(proxy, schema="default_bound"))
    await store.create_run(owned("default"))
    proxy.cut()
    took, raised = await timed(store.get_run("default"))
    assert isinstance(raised, StoreUnavailable) and 9.9 <= took < 11.0, (took, raised)


async def test_connections_that_died_silently_are_replaced_within_one_operation(
    proxy: Proxy, stores: OpenedStores
) -> None:
    store = await opened(stores, through(proxy, operation_timeout=2.0, schema="quiet"), min_size=3)
    await store.create_run(owned("quiet"))
    lease = Lease("quiet", "me", 1, 0.0)
    await store.save_step(lease, step("quiet", "a"))  # the step writer holds a connection now
    proxy.forget()  # every open connection is dead, silently; new ones work
    took, raised = await timed(store.get_run("quiet"))
    # The first attempt waits half the operation's timeout for its reply, the second is answered.
    assert raised is None and 1.0 <= took < 1.7, (took, raised)
    # Every other connection was replaced too (the held one included): no second wait.
    for operation in (
        store.save_step(lease, step("quiet", "b")),
        store.load_steps("quiet"),
        store.due_runs(time.time()),
        store.get_run("quiet"),
    ):
        took, raised = await timed(operation)
        assert raised is None and took < 0.5, (took, raised)


# -- the LISTEN connection ---------------------------------------------------------------------


async def test_a_waiter_gets_its_signal_when_its_listen_connection_died_silently(
    server: PostgresServer, proxy: Proxy, stores: OpenedStores
) -> None:
    waiter_store = await opened(stores, through(proxy, operation_timeout=2.0, schema="listen"))
    sender = await opened(stores, f"{server.url}?schema=listen")
    waiter = asyncio.ensure_future(waiter_store.wait_for_signal("r", "go", 0, 60))
    await asyncio.sleep(0.5)  # listening
    proxy.forget()  # the LISTEN connection and the pool's are dead, nothing says so
    assert await sender.send_signal("r", "go", "", '"first"')
    found = await asyncio.wait_for(waiter, 15)
    assert found is not None and found.payload == '"first"'
    # The listener noticed (a ping after 2 s of silence got no answer within 1 s) and listens
    # on a new connection: the next delivery wakes its waiter at once, not at the next re-read.
    deadline = time.monotonic() + 10
    while not waiter_store._listener or not waiter_store._listener.healthy:
        assert time.monotonic() < deadline, "the listener did not reconnect"
        await asyncio.sleep(0.1)
    second = asyncio.ensure_future(waiter_store.wait_for_signal("r", "go", 1, 60))
    await asyncio.sleep(0.5)
    sent = time.monotonic()
    assert await sender.send_signal("r", "go", "again", '"second"')
    found = await asyncio.wait_for(second, 15)
    assert found is not None and found.payload == '"second"'
    assert time.monotonic() - sent < 1.0


async def test_a_waiter_rides_out_a_partition_and_gets_a_signal_sent_meanwhile(
    server: PostgresServer, proxy: Proxy, stores: OpenedStores
) -> None:
    waiter_store = await opened(stores, through(proxy, operation_timeout=1.0, schema="ride"))
    sender = await opened(stores, f"{server.url}?schema=ride")
    waiter = asyncio.ensure_future(waiter_store.wait_for_signal("r", "go", 0, 60))
    await asyncio.sleep(0.5)
    proxy.cut()
    await asyncio.sleep(4.0)  # the listener is found dead, re-reads fail: the wait goes on
    assert not waiter.done()
    assert await sender.send_signal("r", "go", "", '"meanwhile"')
    await asyncio.sleep(1.0)
    proxy.heal()
    healed = time.monotonic()
    found = await asyncio.wait_for(waiter, 15)
    assert found is not None and found.payload == '"meanwhile"'
    assert time.monotonic() - healed < 3.0


# -- a worker cut off from its store ------------------------------------------------------------


@pytest.mark.parametrize("dead", [False, True], ids=["partition", "partition, then dead connections"])
async def test_a_partitioned_worker_notices_it_lost_its_leases_and_carries_on_soon_after_healing(
    server: PostgresServer, proxy: Proxy, caplog: pytest.LogCaptureFixture, dead: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="durable")
    schema = f"worker_{int(dead)}"
    executed: Counter[str] = Counter()
    paused: set[int] = set()
    wf = Workflow("cut", db=through(proxy, schema=schema), lease_seconds=3.0, default_retries=0)

    @wf.task
    async def work(name: str) -> str:
        executed[name] += 1
        return name

    @wf.workflow(id="cut-{n}")
    async def flow(n: int) -> list[str]:
        first = await work(f"a{n}")  # returns once its checkpoint is committed
        if n not in paused:  # not a step, and only the first time: resumed runs go straight on
            paused.add(n)
            # The worker is cut off while its runs sit here, past the time an owner trusts its
            # lease without asking the store (LEASE_TRUST of the lease).
            await asyncio.sleep(3.5)
        return [first, await work(f"b{n}")]

    for n in range(4):
        await flow.start(n)
    worker = wf.worker(concurrency=4, poll_interval=0.1)
    stop = asyncio.Event()
    working = asyncio.ensure_future(worker.run(stop))
    try:
        deadline = time.monotonic() + 20
        # Cut once every run sits past its first checkpoint: a cut between a body and its commit
        # would leave that run's commit held until the heal, and it would never lose its lease.
        while len(paused) < 4:
            assert time.monotonic() < deadline, (executed, paused)
            await asyncio.sleep(0.02)
        proxy.cut()
        await asyncio.sleep(8.0)  # more than twice the lease: every lease is lost on the store's clock
        if dead:
            proxy.forget()  # the connections open across the partition never answer again
        proxy.heal()
        healed = time.monotonic()
        for n in range(4):
            assert await wf.wait_for(f"cut-{n}", timeout=60) == [f"a{n}", f"b{n}"]
        took = time.monotonic() - healed
    finally:
        stop.set()
        await asyncio.wait_for(working, 30)
        await wf.close()
    assert took < 5.0, took  # before: 20 to 50 s, stuck on connections that died
    # Each step once: a's checkpoints were committed before the partition, b never started under
    # a lease the owner could not confirm (it stopped the runs instead, and resumed them later).
    assert executed == Counter({f"{step}{n}": 1 for step in "ab" for n in range(4)}), executed
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for n in range(4):
        assert any(m.startswith(f"run 'cut-{n}': lease renewal failed") for m in warnings), warnings
        assert any(m.startswith(f"run 'cut-{n}': lost its lease") for m in warnings), warnings
