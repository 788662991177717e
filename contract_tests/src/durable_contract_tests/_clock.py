"""One clock for leases: a claimer whose clock is a minute off agrees with everyone on who holds a run.

A store shared across hosts (``multi-host``) compares and sets every lease on one clock, its own
(a database server's), whatever its callers' clocks say. Each test opens a second store object
over the same data and skews its ``Store.clock`` by a minute, as on a host whose clock is wrong,
and that object's caller takes its times from it: the ``now`` it polls with, the lease expiry
of a run it creates owned (a direct call).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from durable.store import Capability, RunRecord, RunStatus, Store
from durable_contract_tests._base import ContractBase, StoreHarness, requires
from durable_contract_tests._kit import OWNER_A, OWNER_B, get, make_run

SKEW = 60.0
"""How far the skewed store's clock is off, ahead or behind."""
LEASE = 30.0
SHORT_LEASE = 0.5
CLOCKS = 1.0
"""How far the store's clock (a database server's, say) may be from this process's."""


async def skewed(stores: StoreHarness, store: Store, skew: float) -> Store:
    """Another opened store object over ``store``'s data, whose clock is ``skew`` seconds off."""
    other = await stores.reopen(store)
    other.clock = lambda: time.time() + skew
    return other


def ids(runs: list[RunRecord]) -> list[str]:
    return [run.run_id for run in runs]


class ClockContract(ContractBase, contract=True):
    """Leases judged on the store's clock: ``due_runs``, ``claim_run`` and a run created with a lease."""

    @requires(Capability.MULTI_HOST)
    @pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["ahead", "behind"])
    async def test_a_claimer_whose_clock_is_off_finds_no_live_run_due_and_cannot_take_it(
        self, stores: StoreHarness, store: Store, skew: float
    ) -> None:
        await store.create_run(make_run("run-1"))
        lease = await store.claim_run("run-1", OWNER_A, LEASE)
        assert lease is not None
        claimer = await skewed(stores, store, skew)
        # A minute ahead, every lease taken for 30 s looks expired half a minute ago.
        assert ids(await claimer.due_runs(claimer.clock())) == []
        assert await claimer.claim_run("run-1", OWNER_B, LEASE) is None
        run = await get(store, "run-1")
        assert (run.owner, run.lease_token) == (OWNER_A, lease.token)

    @requires(Capability.MULTI_HOST)
    @pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["ahead", "behind"])
    async def test_a_claimer_whose_clock_is_off_finds_a_dead_owners_run_due_once_its_lease_expired(
        self, stores: StoreHarness, store: Store, skew: float
    ) -> None:
        await store.create_run(make_run("run-1"))
        first = await store.claim_run("run-1", OWNER_A, SHORT_LEASE)
        assert first is not None
        claimer = await skewed(stores, store, skew)
        await asyncio.sleep(SHORT_LEASE + 0.2)  # expired on the store's clock, whatever the claimer's says
        # A minute behind, the lease would look live for another minute.
        assert ids(await claimer.due_runs(claimer.clock())) == ["run-1"]
        taken = await claimer.claim_run("run-1", OWNER_B, LEASE)
        assert taken is not None and (taken.owner, taken.token) == (OWNER_B, first.token + 1)

    @requires(Capability.MULTI_HOST)
    @pytest.mark.parametrize("skew", [SKEW, -SKEW], ids=["ahead", "behind"])
    async def test_a_run_created_with_a_lease_by_a_clock_that_is_off_gets_the_lease_length_it_asked_for(
        self, stores: StoreHarness, store: Store, skew: float
    ) -> None:
        creator = await skewed(stores, store, skew)
        now = creator.clock()
        run = replace(
            make_run("run-1", owner=OWNER_A, created_at=now), lease_expires_at=now + LEASE
        )  # a direct call: its caller owns the new run, for LEASE seconds by its own clock
        returned, created = await creator.create_run(run)
        assert created and returned.status is RunStatus.RUNNING
        # Live for everyone else: a minute behind, the expiry given was already half a minute past.
        assert await store.claim_run("run-1", OWNER_B, LEASE) is None
        assert ids(await store.due_runs(time.time())) == []
        stored = await get(store, "run-1")
        # And no longer than asked: a minute ahead, the expiry given was a minute and a half away.
        assert stored.lease_expires_at is not None
        assert time.time() + LEASE - CLOCKS - 1.0 <= stored.lease_expires_at <= time.time() + LEASE + CLOCKS
        # What create_run returned is the record as stored, with the expiry the store gave it.
        assert returned == stored
        assert (stored.owner, stored.lease_token, stored.created_at) == (OWNER_A, 1, now)
