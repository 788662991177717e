"""Opening: ``open(create=False)`` creates nothing and finds only data that exists, and every
fresh store the factory makes holds data of its own."""

from __future__ import annotations

import os

import pytest

from durable.errors import StoreNotFound
from durable.store import Capability, RunQuery, Store, accepts_create
from durable_contract_tests._base import ContractBase, StoreHarness
from durable_contract_tests._kit import get, make_run


def _tree(directory: str) -> list[str]:
    found = (os.path.join(root, name) for root, dirs, files in os.walk(directory) for name in dirs + files)
    return sorted(found)


async def _open_missing(store: Store) -> StoreNotFound:
    if not accepts_create(store):
        pytest.fail(
            f"{type(store).__qualname__}.open() takes no create= argument: open(create=False) must open "
            "only data that exists and raise durable.errors.StoreNotFound otherwise (the CLI opens stores "
            "so, and a mistyped URL must not create an empty store)",
            pytrace=False,
        )
    with pytest.raises(StoreNotFound) as caught:
        await store.open(create=False)
    return caught.value


class OpeningContract(ContractBase, contract=True):
    """``open(create=...)`` and the factory's fresh data."""

    async def test_opening_data_that_does_not_exist_without_create_raises_store_not_found_and_creates_nothing(
        self, stores: StoreHarness
    ) -> None:
        scratch = stores.scratch_directory()
        before = _tree(scratch) if scratch else []
        fresh = await stores.make()
        error = await _open_missing(fresh)
        assert str(error), "StoreNotFound should say which store (file, schema, prefix) is missing"
        # Nothing was created: the data is still missing for the next opener.
        persistent = Capability.PERSISTENT in fresh.capabilities
        again = await stores.make(same_data_as=fresh) if persistent else fresh
        await _open_missing(again)
        if scratch:
            assert _tree(scratch) == before, (
                f"open(create=False) of missing data created {sorted(set(_tree(scratch)) - set(before))}"
            )
        # Opening it with create=True (the default) still works afterwards.
        opened = await stores.open(again)
        assert await opened.list_runs(RunQuery()) == []

    async def test_opening_existing_data_without_create_opens_it(self, stores: StoreHarness) -> None:
        first = await stores.new()
        await first.create_run(make_run("run-1"))
        if Capability.PERSISTENT not in first.capabilities:
            # The data lives in the store object: closed and opened again, it is the same data.
            await first.close()
            if not accepts_create(first):
                await _open_missing(first)  # fails, saying what is missing
            await first.open(create=False)
            assert (await get(first, "run-1")).run_id == "run-1"
            return
        await first.close()
        second = await stores.make(same_data_as=first)
        if not accepts_create(second):
            await _open_missing(second)
        await second.open(create=False)
        stores.adopt(second)
        assert (await get(second, "run-1")).run_id == "run-1"

    async def test_two_fresh_stores_share_no_data(self, stores: StoreHarness) -> None:
        one, other = await stores.new(), await stores.new()
        await one.create_run(make_run("run-1"))
        await one.send_signal("run-1", "go", "", "1")
        assert await other.get_run("run-1") is None, (
            "store_factory() (or the backend's isolated_url) gave two fresh stores the same data"
        )
        assert await other.list_runs(RunQuery()) == []
        assert await other.list_signals("run-1") == []
