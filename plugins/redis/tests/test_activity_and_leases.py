"""``RunRecord.activity`` is stored with the run, and ``renew_lease(lease, 0)`` gives a lease back.

Against a real server: what each operation writes into the run's hash, and records written by the
previous release (which had no ``activity`` field).
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import redis
from redis_test_kit import lease_of, new_run

from durable.errors import LeaseLost
from durable.store import RunQuery, RunStatus
from durable_redis import RedisStore

DOING = '{"steps": [{"key": "fetch", "attempt": 1}]}'
WAITING = '{"signal": "approval", "timeout": null}'


async def test_an_activity_given_at_creation_is_read_back_by_get_list_and_due(store: RedisStore) -> None:
    pending = dataclasses.replace(new_run("queued", owner=None), activity=DOING)
    await store.create_run(pending)
    assert (await store.get_run("queued")) == pending
    [listed] = await store.list_runs(RunQuery())
    assert listed.activity == DOING
    [due] = await store.due_runs(time.time())
    assert due.activity == DOING


async def test_update_run_writes_the_activity_as_given_and_none_clears_it(store: RedisStore) -> None:
    run = new_run("parked")
    await store.create_run(run)
    lease = lease_of(run)
    await store.update_run(lease, RunStatus.WAITING, activity=WAITING)
    stored = await store.get_run("parked")
    assert stored is not None and stored.activity == WAITING and stored.status is RunStatus.WAITING
    await store.update_run(lease, RunStatus.RUNNING)
    stored = await store.get_run("parked")
    assert stored is not None and stored.activity is None


async def test_renew_lease_replaces_the_activity_only_when_given_one(store: RedisStore) -> None:
    run = new_run("beating")
    await store.create_run(run)
    lease = lease_of(run)
    renewed = await store.renew_lease(lease, 30, activity=DOING)
    assert renewed.activity == DOING
    renewed = await store.renew_lease(lease, 30)
    assert renewed.activity == DOING
    stored = await store.get_run("beating")
    assert stored is not None and stored.activity == DOING
    stale = dataclasses.replace(lease, token=lease.token + 1)
    with pytest.raises(LeaseLost):
        await store.renew_lease(stale, 30, activity=WAITING)
    stored = await store.get_run("beating")
    assert stored is not None and stored.activity == DOING


async def test_claiming_and_resetting_a_run_clear_its_activity(store: RedisStore) -> None:
    run = new_run("busy")
    await store.create_run(run)
    await store.renew_lease(lease_of(run), 0, activity=DOING)
    assert await store.claim_run("busy", "owner-b", 30) is not None
    claimed = await store.get_run("busy")
    assert claimed is not None and claimed.activity is None

    failed = new_run("broken")
    await store.create_run(failed)
    await store.update_run(lease_of(failed), RunStatus.FAILED, error="{}", release=True, activity=DOING)
    reset = await store.reset_run("broken")
    assert reset is not None and reset.status is RunStatus.PENDING and reset.activity is None


async def test_a_run_written_by_the_previous_release_reads_no_activity(
    store: RedisStore, admin: redis.Redis
) -> None:
    run = new_run("old", owner=None)
    await store.create_run(run)
    key = store.keys.run_keys("old")[0]
    assert "activity" not in admin.hgetall(key)  # a None activity is no field, as before
    stored = await store.get_run("old")
    assert stored == run and stored.activity is None


async def test_renewing_a_lease_for_zero_seconds_lets_another_owner_claim_at_once(
    store: RedisStore, admin: redis.Redis
) -> None:
    run = new_run("handed-back")
    await store.create_run(run)
    lease = lease_of(run)
    given_back = await store.renew_lease(lease, 0)
    assert given_back.owner == "owner-a" and given_back.status is RunStatus.RUNNING
    assert given_back.lease_expires_at is not None and given_back.lease_expires_at <= time.time()
    key = store.keys.run_keys("handed-back")[0]
    assert admin.pttl(key) == -1  # the lease ends by its stored expiry, not by a key expiry

    [due] = await store.due_runs(time.time())
    assert due.run_id == "handed-back" and due.owner == "owner-a"
    taken = await store.claim_run("handed-back", "owner-b", 30)
    assert taken is not None and taken.owner == "owner-b" and taken.token == lease.token + 1
    with pytest.raises(LeaseLost):
        await store.update_run(lease, RunStatus.COMPLETED, result="1")
