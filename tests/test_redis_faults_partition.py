"""Partitions and connections that die silently, on Redis (issue 15: every round trip has a timeout).

Each test puts a TCP proxy (``redis_test_kit.Proxy``) between the store and a redis-server of
its own. ``cut`` stops forwarding without closing anything (a partition: nothing arrives, nothing
fails), ``heal`` forwards again, ``forget`` makes the open connections silent for good while new
ones work (a NAT or a server that forgot them).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from network_faults import OpenedStores, timed
from redis_test_kit import Proxy, lease_of, new_run, step
from servers import RedisServer

from durable import Workflow
from durable.errors import LeaseLost, StoreUnavailable
from durable_redis import RedisStore

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    yield redis_server
    redis_server.stop()


@pytest.fixture
async def proxy(server: RedisServer) -> AsyncIterator[Proxy]:
    front = Proxy("127.0.0.1", server.port)
    await front.start()
    yield front
    front.heal()
    await front.stop()


@pytest.fixture
async def stores() -> AsyncIterator[OpenedStores]:
    opened = OpenedStores()
    yield opened
    await opened.close()


async def opened(stores: OpenedStores, url: str, **options: Any) -> RedisStore:
    return await stores.open(RedisStore(url, **options))


# -- every round trip has a timeout -------------------------------------------------------------


async def test_every_operation_across_a_partition_fails_within_its_timeout_and_works_after_healing(
    proxy: Proxy, stores: OpenedStores
) -> None:
    store = await opened(stores, proxy.url, operation_timeout=1.0)
    run = new_run("cut-off")
    await store.create_run(run)
    proxy.cut()
    operations: dict[str, Callable[[], Awaitable[Any]]] = {
        "get_run": lambda: store.get_run("cut-off"),
        "claim_run": lambda: store.claim_run("cut-off", "other", 15.0),
        "renew_lease": lambda: store.renew_lease(lease_of(run), 15.0),
        "save_step": lambda: store.save_step(lease_of(run), step("cut-off", "a")),
        "due_runs": lambda: store.due_runs(time.time()),
        "send_signal": lambda: store.send_signal("cut-off", "go", "", "1"),
        "list_signals": lambda: store.list_signals("cut-off"),
    }
    for name, operation in operations.items():
        took, raised = await timed(operation())
        assert isinstance(raised, StoreUnavailable), (name, raised)
        assert 0.9 <= took < 1.5, (name, took)
        assert "gave up after 1 s" in str(raised), raised
    proxy.heal()
    took, raised = await timed(store.get_run("cut-off"))
    assert raised is None and took < 0.5  # a fresh connection; the ones cut were dropped


async def test_the_default_bound_is_five_seconds(proxy: Proxy, stores: OpenedStores) -> None:
    store = await opened(stores, proxy.url)
    await store.create_run(new_run("default"))
    proxy.cut()
    took, raised = await timed(store.get_run("default"))
    assert isinstance(raised, StoreUnavailable) and 4.9 <= took < 5.5, (took, raised)


async def test_connections_that_died_silently_are_replaced_within_one_operation(
    proxy: Proxy, stores: OpenedStores
) -> None:
    store = await opened(stores, proxy.url, operation_timeout=2.0)
    await store.create_run(new_run("quiet"))
    proxy.forget()  # every open connection is dead, silently; new ones work
    took, raised = await timed(store.get_run("quiet"))
    # The first attempt waits half the operation's timeout for its reply, the second is answered.
    assert raised is None and 1.0 <= took < 1.6, (took, raised)
    took, raised = await timed(store.save_step(lease_of(new_run("quiet")), step("quiet", "a")))
    assert raised is None and took < 0.5, (took, raised)


async def test_a_partitioned_owner_logs_its_failing_renewals_and_starts_no_step_after_losing_its_lease(
    server: RedisServer, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="durable")
    executed: Counter[str] = Counter()

    def app(url: str) -> tuple[Workflow, Any]:
        wf = Workflow("cut", db=url, lease_seconds=2.0, default_retries=0)

        @wf.task
        async def work(name: str) -> str:
            executed[name] += 1
            return name

        @wf.workflow(id="partitioned")
        async def flow() -> list[str]:
            first = await work("a")
            if url == proxy.url:
                proxy.cut()  # the first owner is cut off right after its first checkpoint
            await asyncio.sleep(3.0)  # not a step: the partitioned owner sits here past its lease
            return [first, await work("b")]

        return wf, flow

    cut_off, flow = app(proxy.url)
    running = asyncio.ensure_future(flow())
    await asyncio.sleep(0.3)
    assert executed["a"] == 1
    healthy, flow_again = app(server.url)  # another process, straight to the server
    taken_over = asyncio.ensure_future(flow_again())
    await asyncio.sleep(3.0)
    proxy.heal()
    _, raised = await timed(running)
    assert isinstance(raised, LeaseLost), raised
    assert await taken_over == ["a", "b"]
    # Step a was committed before the partition: the new owner replayed it. Step b ran once.
    assert executed == {"a": 1, "b": 1}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("run 'partitioned': lease renewal failed" in m for m in messages), messages
    await cut_off.close()
    await healthy.close()


# -- signal waits when the notification connection drops ---------------------------------------


async def test_a_waiting_run_gets_its_signal_after_its_subscription_is_killed(
    server: RedisServer, stores: OpenedStores
) -> None:
    wf = Workflow("notified", db=server.url)
    waiting = asyncio.Event()

    @wf.workflow(id="approval")
    async def approval() -> object:
        waiting.set()
        return await wf.signal("go")

    run = asyncio.ensure_future(approval())
    await waiting.wait()
    await asyncio.sleep(0.2)  # subscribed and waiting
    admin = redis.Redis.from_url(server.url)
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
    sender = Workflow("notified", db=server.url)  # another process delivers it
    assert await sender.complete("approval", "go", {"approved": True})
    assert await asyncio.wait_for(run, 5) == {"approved": True}
    admin.close()
    await sender.close()
    await wf.close()


async def test_a_waiter_gets_its_signal_when_its_subscription_died_silently(
    server: RedisServer, proxy: Proxy, stores: OpenedStores
) -> None:
    waiter_store = await opened(stores, proxy.url, operation_timeout=2.0)
    sender = await opened(stores, server.url)
    waiter = asyncio.ensure_future(waiter_store.wait_for_signal("r", "go", 0, 60))
    await asyncio.sleep(0.5)
    proxy.forget()  # the subscription and the store's connections are dead, nothing says so
    started = time.monotonic()
    assert await sender.send_signal("r", "go", "", '"sent"')
    found = await asyncio.wait_for(waiter, 15)
    # Noticed by a ping after 2 s without a message that got no reply within 1 s; then re-read.
    assert found is not None and found.payload == '"sent"'
    assert time.monotonic() - started < 6.5


async def test_a_waiter_rides_out_a_partition_and_gets_a_signal_sent_meanwhile(
    server: RedisServer, proxy: Proxy, stores: OpenedStores
) -> None:
    waiter_store = await opened(stores, proxy.url, operation_timeout=1.0)
    sender = await opened(stores, server.url)
    waiter = asyncio.ensure_future(waiter_store.wait_for_signal("r", "go", 0, 60))
    await asyncio.sleep(0.5)
    proxy.cut()
    await asyncio.sleep(4.0)  # the subscription is found dead, re-reads fail: the wait goes on
    assert not waiter.done()
    assert await sender.send_signal("r", "go", "", '"meanwhile"')
    await asyncio.sleep(1.0)
    proxy.heal()
    healed = time.monotonic()
    found = await asyncio.wait_for(waiter, 15)
    assert found is not None and found.payload == '"meanwhile"'
    assert time.monotonic() - healed < 3.0
