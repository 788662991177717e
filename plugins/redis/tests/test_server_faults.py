"""The Redis store against a real server: TTL policy, round trips, killed connections, outages."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis_test_kit import CountingConnection, Proxy, lease_of, new_run, step

from durable import Workflow
from durable.backoff import constant
from durable.errors import StoreUnavailable
from durable.store import Lease, RunQuery, RunStatus
from durable_redis import RedisStore

pytestmark = pytest.mark.asyncio

StoreMaker = Callable[..., RedisStore]


def ttls(admin: redis.Redis, store: RedisStore, run_id: str) -> dict[str, int]:
    """PTTL of each existing per-run key: -1 means no expiry."""
    found = {}
    for kind, key in zip(("run", "steps", "sigs", "sigids"), store.keys.run_keys(run_id), strict=True):
        pttl = int(admin.pttl(key))
        if pttl != -2:
            found[kind] = pttl
    return found


async def populated(store: RedisStore, run_id: str) -> Lease:
    run = new_run(run_id)
    await store.create_run(run)
    await store.save_step(lease_of(run), step(run_id, "a"))
    await store.send_signal(run_id, "go", "d1", "1")
    return lease_of(run)


# -- TTL policy -------------------------------------------------------------------------------


async def test_a_waiting_run_keeps_every_key_without_expiry(store: RedisStore, admin: redis.Redis) -> None:
    held = await populated(store, "waiting")
    await store.update_run(held, RunStatus.WAITING, release=True)
    assert ttls(admin, store, "waiting") == {"run": -1, "steps": -1, "sigs": -1, "sigids": -1}


async def test_a_failed_run_keeps_every_key_without_expiry(store: RedisStore, admin: redis.Redis) -> None:
    held = await populated(store, "failed")
    await store.update_run(held, RunStatus.FAILED, error='{"type": "E", "message": "m"}', release=True)
    assert set(ttls(admin, store, "failed").values()) == {-1}


@pytest.mark.parametrize("final", [RunStatus.COMPLETED, RunStatus.CANCELLED])
async def test_a_finished_run_gets_the_ttl_on_every_key(
    make_store: StoreMaker, admin: redis.Redis, final: RunStatus
) -> None:
    store = make_store(ttl=100)
    await store.open()
    held = await populated(store, "done")
    await store.update_run(held, final, release=True)
    found = ttls(admin, store, "done")
    assert set(found) == {"run", "steps", "sigs", "sigids"}
    assert all(95_000 < pttl <= 100_000 for pttl in found.values()), found


async def test_cancelling_an_idle_run_starts_its_ttl(make_store: StoreMaker, admin: redis.Redis) -> None:
    store = make_store(ttl=100)
    await store.open()
    held = await populated(store, "idle")
    await store.update_run(held, RunStatus.WAITING, release=True)
    await store.request_cancel("idle")
    assert all(pttl > 0 for pttl in ttls(admin, store, "idle").values())


async def test_claiming_or_resetting_a_finished_run_removes_its_ttl(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store(ttl=100)
    await store.open()
    held = await populated(store, "again")
    await store.update_run(held, RunStatus.CANCELLED, release=True)
    await store.reset_run("again")
    assert set(ttls(admin, store, "again").values()) == {-1}
    claimed = await store.claim_run("again", "owner-b", 30)
    assert claimed is not None
    await store.update_run(claimed, RunStatus.COMPLETED, release=True)
    assert all(pttl > 0 for pttl in ttls(admin, store, "again").values())


async def test_keys_written_after_completion_expire_with_the_run(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store(ttl=100)
    await store.open()
    run = new_run("late-keys")
    await store.create_run(run)
    await store.update_run(lease_of(run), RunStatus.COMPLETED, release=True)
    await store.send_signal("late-keys", "late", "", "1")
    await store.save_step(lease_of(run), step("late-keys", "late"))
    assert all(pttl > 0 for pttl in ttls(admin, store, "late-keys").values())


async def test_ttl_zero_keeps_a_finished_run_forever(make_store: StoreMaker, admin: redis.Redis) -> None:
    store = make_store(ttl=0)
    await store.open()
    held = await populated(store, "forever")
    await store.update_run(held, RunStatus.COMPLETED, release=True)
    assert set(ttls(admin, store, "forever").values()) == {-1}


async def test_signals_sent_before_their_run_exists_expire_unless_the_run_is_created(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    store = make_store(ttl=100)
    await store.open()
    await store.send_signal("early", "go", "", "1")
    assert all(pttl > 0 for pttl in ttls(admin, store, "early").values())
    await store.create_run(new_run("early", owner=None))
    assert set(ttls(admin, store, "early").values()) == {-1}


async def test_an_expired_run_disappears_from_listings_and_from_the_index(make_store: StoreMaker) -> None:
    store = make_store(ttl=0.2)
    await store.open()
    kept = new_run("kept")
    await store.create_run(kept)
    gone = new_run("gone")
    await store.create_run(gone)
    await store.update_run(lease_of(gone), RunStatus.COMPLETED, release=True)
    await asyncio.sleep(0.4)
    assert [run.run_id for run in await store.list_runs(RunQuery())] == ["kept"]
    assert await store.client.zrange(store.keys.index, 0, -1) == ["kept"]


# -- round trips ------------------------------------------------------------------------------


async def test_a_new_checkpoint_costs_one_round_trip(make_store: StoreMaker) -> None:
    name = "rt-" + secrets.token_hex(4)
    store = make_store(connection_class=CountingConnection, client_name=name)
    await store.open()
    run = new_run("counted")
    await store.create_run(run)
    await store.save_step(lease_of(run), step("counted", "warm-up"))
    before = CountingConnection.sent[name]
    for i in range(20):
        await store.save_step(lease_of(run), step("counted", f"s{i}"))
    assert CountingConnection.sent[name] - before == 20
    before = CountingConnection.sent[name]
    assert len(await store.load_steps("counted")) == 21
    assert CountingConnection.sent[name] - before == 1


# -- killed connections and outages -------------------------------------------------------------


def kill_clients(admin: redis.Redis, name: str) -> int:
    killed = 0
    for client in admin.client_list():
        if client.get("name") == name:
            admin.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


def app(store: RedisStore, lease_seconds: float = 15.0) -> Workflow:
    return Workflow(
        "faults", db=store, default_retries=0, default_backoff=constant(0), lease_seconds=lease_seconds
    )


async def test_killing_the_store_connections_mid_workflow_runs_each_step_once(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    name = "kill-" + secrets.token_hex(4)
    store = make_store(client_name=name)
    wf = app(store)
    calls: Counter[str] = Counter()

    @wf.task
    async def work(i: int) -> int:
        calls[f"work{i}"] += 1
        if i in (2, 5):
            assert kill_clients(admin, name) >= 1
        return i * 10

    @wf.workflow(id="killed-{n}")
    async def flow(n: int) -> int:
        return sum([await work(i) for i in range(n)])

    assert await flow(n=8) == sum(i * 10 for i in range(8))
    assert calls == {f"work{i}": 1 for i in range(8)}
    assert [s.key for s in await store.load_steps("killed-8")].__len__() == 8
    await wf.close()


async def test_a_waiter_survives_its_subscription_being_killed(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    name = "sub-" + secrets.token_hex(4)
    waiting = make_store(client_name=name)
    await waiting.open()
    sender = make_store(prefix=waiting.prefix)
    await sender.open()
    waiter = asyncio.ensure_future(waiting.wait_for_signal("r", "go", 0, 20))
    await asyncio.sleep(0.2)
    assert kill_clients(admin, name) >= 1
    await asyncio.sleep(0.2)
    await sender.send_signal("r", "go", "", '"after the kill"')
    found = await asyncio.wait_for(waiter, 10)
    assert found is not None and found.payload == '"after the kill"'


async def test_an_unreachable_server_raises_store_unavailable_quickly(make_store: StoreMaker) -> None:
    store = make_store(url="redis://127.0.0.1:1/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        await store.open()
    assert time.monotonic() - started < 10


async def test_an_outage_mid_workflow_fails_clearly_and_the_run_resumes_afterwards(
    make_store: StoreMaker, redis_url: str
) -> None:
    target = urlsplit(redis_url)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    url = f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}"
    # Few retries of our own: the engine retries an unavailable store on top of them.
    store = make_store(url=url, socket_timeout=1.0, retries=1, retry_delay=0.01)
    prefix = store.prefix
    calls: Counter[str] = Counter()

    def process(store: RedisStore) -> tuple[Workflow, Any]:
        wf = app(store, lease_seconds=0.5)

        @wf.task
        async def work(i: int) -> int:
            calls[f"work{i}"] += 1
            if i == 2 and calls["work2"] == 1:
                await proxy.stop()
            return i

        @wf.workflow(id="outage")
        async def flow() -> int:
            return sum([await work(i) for i in range(5)])

        return wf, flow

    try:
        first, flow = process(store)
        with pytest.raises(StoreUnavailable):
            await flow()
        await first.close()
        await proxy.start()
        await asyncio.sleep(0.6)  # the cut-off executor's lease runs out
        second, flow = process(make_store(url=url, prefix=prefix))
        assert await flow() == 10
        await second.close()
    finally:
        await proxy.stop()
    # Steps whose checkpoint committed before the outage never ran again; step 2 had not committed.
    assert calls == {"work0": 1, "work1": 1, "work2": 2, "work3": 1, "work4": 1}
