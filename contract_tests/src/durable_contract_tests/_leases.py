"""Leases and fencing: who may execute a run, and why a stale executor can write nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from durable.errors import LeaseLost
from durable.store import RunStatus, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import OWNER_A, OWNER_B, get, make_run, make_step, owned_run

SHORT_LEASE = 0.2
CLAIMERS = 20
CLOCKS = 1.0
"""How far the store's clock (a database server's, say) may be from this process's when a lease's
expiry is compared with ``time.time()``."""


class LeaseContract(ContractBase, contract=True):
    """``claim_run``, ``renew_lease`` and the fencing of every write made for a run."""

    async def test_claiming_a_pending_run_makes_it_running_under_the_new_owner(self, store: Store) -> None:
        await store.create_run(make_run("run-1"))
        before = time.time()
        lease = await store.claim_run("run-1", OWNER_A, 30.0)
        after = time.time()
        assert lease is not None
        assert (lease.run_id, lease.owner, lease.token) == ("run-1", OWNER_A, 1)
        assert before + 30.0 - CLOCKS <= lease.expires_at <= after + 30.0 + CLOCKS
        run = await get(store, "run-1")
        assert (run.status, run.owner, run.lease_token, run.lease_expires_at) == (
            RunStatus.RUNNING,
            OWNER_A,
            1,
            lease.expires_at,
        )

    async def test_each_claim_increases_the_lease_token_by_one(self, store: Store) -> None:
        await store.create_run(make_run("run-1"))
        tokens = []
        for owner in ("o1", "o2", "o3"):
            lease = await store.claim_run("run-1", owner, 30.0)
            assert lease is not None
            tokens.append(lease.token)
            await store.update_run(lease, RunStatus.RUNNING, release=True)
        assert tokens == [1, 2, 3]
        assert (await get(store, "run-1")).lease_token == 3

    async def test_a_claim_is_refused_while_another_owner_holds_a_live_lease(self, store: Store) -> None:
        await owned_run(store, "run-1", owner=OWNER_A)
        assert await store.claim_run("run-1", OWNER_B, 30.0) is None
        assert await store.claim_run("run-1", OWNER_A, 30.0) is None  # not even by the same owner
        run = await get(store, "run-1")
        assert (run.owner, run.lease_token) == (OWNER_A, 1)

    async def test_a_claim_succeeds_once_the_lease_has_expired(self, store: Store) -> None:
        await store.create_run(make_run("run-1"))
        first = await store.claim_run("run-1", OWNER_A, SHORT_LEASE)
        assert first is not None
        await asyncio.sleep(SHORT_LEASE + 0.1)
        second = await store.claim_run("run-1", OWNER_B, 30.0)
        assert second is not None and (second.owner, second.token) == (OWNER_B, first.token + 1)

    async def test_a_released_run_can_be_claimed_at_once_and_keeps_its_token(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.RUNNING, release=True)
        run = await get(store, "run-1")
        assert (run.owner, run.lease_expires_at, run.lease_token) == (None, None, 1)
        taken = await store.claim_run("run-1", OWNER_B, 30.0)
        assert taken is not None and taken.token == 2

    @pytest.mark.parametrize("final", [RunStatus.COMPLETED, RunStatus.CANCELLED])
    async def test_a_run_in_a_final_status_cannot_be_claimed(self, store: Store, final: RunStatus) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, final, release=True)
        assert await store.claim_run("run-1", OWNER_B, 30.0) is None
        run = await get(store, "run-1")
        assert (run.status, run.owner, run.lease_token) == (final, None, 1)

    @pytest.mark.parametrize("status", [RunStatus.FAILED, RunStatus.WAITING, RunStatus.RUNNING])
    async def test_a_released_run_that_is_not_final_can_be_claimed(
        self, store: Store, status: RunStatus
    ) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, status, release=True)
        assert await store.claim_run("run-1", OWNER_B, 30.0) is not None, (
            f"claim_run refused a released {status.value} run: it is not final, so it is claimable "
            "(durable._lifecycle.CLAIMABLE), or the engine would wait for it forever"
        )
        assert (await get(store, "run-1")).status is RunStatus.RUNNING

    async def test_claiming_an_unknown_run_returns_none_and_creates_nothing(self, store: Store) -> None:
        assert await store.claim_run("no-such-run", OWNER_A, 30.0) is None
        assert await store.get_run("no-such-run") is None

    async def test_claiming_clears_the_wake_time(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.WAITING, wake_at=time.time() - 1, release=True)
        assert await store.claim_run("run-1", OWNER_B, 30.0) is not None
        assert (await get(store, "run-1")).wake_at is None

    async def test_of_many_concurrent_claimers_exactly_one_gets_the_lease(self, store: Store) -> None:
        await store.create_run(make_run("run-1"))
        leases = await asyncio.gather(*(store.claim_run("run-1", f"o{i}", 30.0) for i in range(CLAIMERS)))
        granted = [lease for lease in leases if lease is not None]
        assert len(granted) == 1
        run = await get(store, "run-1")
        assert (run.owner, run.lease_token) == (granted[0].owner, 1)

    async def test_renewing_extends_the_lease_and_returns_the_run(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        before = time.time()
        run = await store.renew_lease(lease, 120.0)
        assert run.run_id == "run-1" and run.owner == OWNER_A and run.lease_token == lease.token
        assert run.lease_expires_at is not None and run.lease_expires_at >= before + 120.0 - CLOCKS
        assert await store.get_run("run-1") == run

    async def test_renewing_an_expired_lease_nobody_took_over_succeeds(self, store: Store) -> None:
        await store.create_run(make_run("run-1"))
        lease = await store.claim_run("run-1", OWNER_A, SHORT_LEASE)
        assert lease is not None
        await asyncio.sleep(SHORT_LEASE + 0.1)
        run = await store.renew_lease(lease, 30.0)
        assert run.lease_is_live(time.time()) and run.lease_token == lease.token

    async def test_a_released_lease_renews_while_no_claim_has_followed(self, store: Store) -> None:
        # The token alone fences: update_run(release=True) keeps it current until the next claim.
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.WAITING, wake_at=2_000_000_000.0, release=True)
        released = await get(store, "run-1")
        renewed = await store.renew_lease(lease, 30.0)
        assert renewed == await get(store, "run-1")
        assert (renewed.status, renewed.owner, renewed.lease_token, renewed.wake_at) == (
            RunStatus.WAITING,
            OWNER_A,
            lease.token,
            2_000_000_000.0,
        )
        assert renewed.lease_is_live(time.time()) and renewed.updated_at == released.updated_at
        assert await store.claim_run("run-1", OWNER_B, 30.0) is None

    async def test_a_stale_executor_can_neither_renew_nor_update_nor_checkpoint(self, store: Store) -> None:
        await store.create_run(make_run("run-1"))
        stale = await store.claim_run("run-1", OWNER_A, SHORT_LEASE)
        assert stale is not None
        await asyncio.sleep(SHORT_LEASE + 0.1)
        current = await store.claim_run("run-1", OWNER_B, 30.0)
        assert current is not None and current.token == stale.token + 1
        snapshot = await get(store, "run-1")
        with pytest.raises(LeaseLost):
            await store.renew_lease(stale, 30.0)
        with pytest.raises(LeaseLost):
            await store.update_run(stale, RunStatus.COMPLETED, result='"stale"', release=True)
        with pytest.raises(LeaseLost):
            await store.save_step(stale, make_step("run-1", "late"))
        assert await get(store, "run-1") == snapshot
        assert await store.load_steps("run-1") == []

    async def test_a_lease_with_a_made_up_token_is_refused(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        for token in (0, lease.token + 1, lease.token + 100):
            forged = type(lease)(lease.run_id, lease.owner, token, lease.expires_at)
            with pytest.raises(LeaseLost):
                await store.update_run(forged, RunStatus.COMPLETED, result='"forged"')
        assert (await get(store, "run-1")).status is RunStatus.RUNNING

    async def test_fenced_writes_to_an_unknown_run_raise_lease_lost(self, store: Store) -> None:
        lease = await owned_run(store, "real")
        ghost = type(lease)("no-such-run", lease.owner, lease.token, lease.expires_at)
        with pytest.raises(LeaseLost):
            await store.update_run(ghost, RunStatus.COMPLETED)
        with pytest.raises(LeaseLost):
            await store.renew_lease(ghost, 30.0)
        assert await store.get_run("no-such-run") is None
