"""One clock: every lease comparison and expiry is the Redis server's, whatever the client's clock says.

Each test has a claimer whose clock (``RedisStore.clock``, the store's clock hook) is skewed by a
minute against the store that holds the runs; the server's ``TIME`` decides.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
import redis
from redis_test_kit import CuttingConnection, lease_of, new_run

from durable.store import RunStatus
from durable_redis import RedisStore

pytestmark = pytest.mark.asyncio

StoreMaker = Callable[..., RedisStore]
SKEW = 60.0


def skewed(seconds: float) -> Callable[[], float]:
    return lambda: time.time() + seconds


def server_time(admin: redis.Redis) -> float:
    seconds, micros = admin.time()
    return seconds + micros / 1_000_000


async def test_a_claimer_whose_clock_runs_a_minute_ahead_takes_over_no_live_run(
    make_store: StoreMaker,
) -> None:
    holder = make_store()
    await holder.open()
    for i in range(4):
        await holder.create_run(new_run(f"live-{i}", owner=None))
        assert await holder.claim_run(f"live-{i}", "holder", 15.0) is not None
    ahead = make_store(prefix=holder.prefix, clock=skewed(SKEW))
    await ahead.open()

    # Its now is 60 s past every lease's expiry by its own clock: the server's says they are live.
    assert await ahead.due_runs(ahead.clock(), limit=100) == []
    assert [await ahead.claim_run(f"live-{i}", "ahead", 15.0) for i in range(4)] == [None] * 4
    cancelled = await ahead.request_cancel("live-0")
    assert cancelled is not None and cancelled.status is RunStatus.RUNNING  # its owner stops it
    assert [(await holder.get_run(f"live-{i}")).owner for i in range(4)] == ["holder"] * 4  # type: ignore[union-attr]


async def test_a_claimer_whose_clock_runs_a_minute_behind_resumes_expired_runs_on_the_server_clock(
    make_store: StoreMaker,
) -> None:
    holder = make_store()
    await holder.open()
    for i in range(4):
        await holder.create_run(new_run(f"dead-{i}", owner=None))
        assert await holder.claim_run(f"dead-{i}", "holder", 0.3) is not None
    behind = make_store(prefix=holder.prefix, clock=skewed(-SKEW))
    await behind.open()
    assert await behind.due_runs(behind.clock(), limit=100) == []
    await asyncio.sleep(0.5)  # the holder's leases run out, by the server's clock

    # By its own clock they have 60 s to go; the server's says they are due now.
    due = await behind.due_runs(behind.clock(), limit=100)
    assert sorted(run.run_id for run in due) == [f"dead-{i}" for i in range(4)]
    claimed = [await behind.claim_run(f"dead-{i}", "behind", 15.0) for i in range(4)]
    assert all(lease is not None and lease.token == 2 for lease in claimed)


async def test_due_runs_judges_a_later_now_on_the_server_clock(make_store: StoreMaker) -> None:
    holder = make_store()
    await holder.open()
    await holder.create_run(new_run("later", owner=None))
    assert await holder.claim_run("later", "holder", 30.0) is not None
    ahead = make_store(prefix=holder.prefix, clock=skewed(SKEW))
    await ahead.open()
    # due_runs(now) asks about a moment on the caller's clock: 45 s from its now is 45 s from the
    # server's (the lease is live), 31 s later it has expired.
    assert await ahead.due_runs(ahead.clock() + 25, limit=10) == []
    assert [run.run_id for run in await ahead.due_runs(ahead.clock() + 31, limit=10)] == ["later"]


async def test_leases_expire_lease_seconds_after_the_server_now(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    ahead = make_store(clock=skewed(SKEW))
    await ahead.open()
    await ahead.create_run(new_run("timed", owner=None))
    before = server_time(admin)
    lease = await ahead.claim_run("timed", "ahead", 15.0)
    assert lease is not None and before + 15 <= lease.expires_at <= server_time(admin) + 15
    stored = await ahead.get_run("timed")
    assert stored is not None and stored.lease_expires_at == lease.expires_at
    renewed = await ahead.renew_lease(lease, 30.0)
    assert renewed.lease_expires_at is not None
    assert before + 30 <= renewed.lease_expires_at <= server_time(admin) + 30
    given_back = await ahead.renew_lease(lease, 0.0)
    assert given_back.lease_expires_at is not None and given_back.lease_expires_at <= server_time(admin)
    other = make_store(prefix=ahead.prefix)
    await other.open()
    assert await other.claim_run("timed", "other", 15.0) is not None  # given back: claimable at once


async def test_a_run_created_with_a_lease_by_a_caller_a_minute_slow_is_not_taken_over(
    make_store: StoreMaker, admin: redis.Redis
) -> None:
    behind = make_store(clock=skewed(-SKEW))
    await behind.open()
    mine = replace(new_run("direct", owner="behind"), lease_expires_at=behind.clock() + 15)
    stored, created = await behind.create_run(mine)
    assert created
    # Given by a clock a minute slow, the lease would have expired 45 s ago; it lasts 15 s.
    assert stored.lease_expires_at is not None
    assert abs(stored.lease_expires_at - (server_time(admin) + 15)) < 1.0
    other = make_store(prefix=behind.prefix)
    await other.open()
    assert await other.due_runs(time.time(), limit=10) == []
    assert await other.claim_run("direct", "other", 15.0) is None
    assert await other.get_run("direct") == stored


async def test_a_delivery_from_a_sender_a_minute_ahead_makes_a_parked_run_due_at_once(
    make_store: StoreMaker,
) -> None:
    worker = make_store()
    await worker.open()
    run = new_run("parked")
    await worker.create_run(run)
    await worker.update_run(lease_of(run), RunStatus.WAITING, release=True)
    assert await worker.due_runs(time.time(), limit=10) == []
    sender = make_store(prefix=worker.prefix, clock=skewed(SKEW))
    await sender.open()
    assert await sender.send_signal("parked", "go", "", "1")
    assert [run.run_id for run in await worker.due_runs(time.time(), limit=10)] == ["parked"]


async def test_a_claim_sent_again_after_its_reply_was_lost_takes_the_lease_once(
    make_store: StoreMaker,
) -> None:
    store = make_store(connection_class=CuttingConnection, client_name="claim-retry")
    await store.open()
    await store.create_run(new_run("retried", owner=None))
    CuttingConnection.cut_after["claim-retry"] = 0  # the claim runs, its reply is lost
    lease = await store.claim_run("retried", "me", 15.0)
    assert lease is not None and lease.token == 1  # the retry found its own claim
    stored = await store.get_run("retried")
    assert stored is not None and (stored.owner, stored.lease_token) == ("me", 1)
    assert stored.lease_expires_at == lease.expires_at
