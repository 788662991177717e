"""Isolation: one run's or workflow's data never shows through another's, whatever the ids contain."""

from __future__ import annotations

from durable.store import RunQuery, RunStatus, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import get, make_step, owned_run


class IsolationContract(ContractBase, contract=True):
    """Keys that a naive ``run:step`` or ``run:signal`` concatenation would confuse stay apart."""

    async def test_steps_of_runs_whose_ids_concatenate_alike_stay_apart(self, store: Store) -> None:
        joined = await owned_run(store, "a:b")
        short = await owned_run(store, "a")
        await store.save_step(joined, make_step("a:b", "c", '"joined"'))
        await store.save_step(short, make_step("a", "b:c", '"short"'))
        assert [(s.key, s.result) for s in await store.load_steps("a:b")] == [("c", '"joined"')]
        assert [(s.key, s.result) for s in await store.load_steps("a")] == [("b:c", '"short"')]

    async def test_signals_of_runs_whose_ids_concatenate_alike_stay_apart(self, store: Store) -> None:
        assert await store.send_signal("a:b", "c", "", '"joined"') is True
        assert await store.send_signal("a", "b:c", "", '"short"') is True
        assert [(s.name, s.payload) for s in await store.list_signals("a:b")] == [("c", '"joined"')]
        assert [(s.name, s.payload) for s in await store.list_signals("a")] == [("b:c", '"short"')]
        assert await store.list_signals("a:b", "b:c") == []
        assert await store.list_signals("a", "c") == []

    async def test_delivery_ids_that_concatenate_alike_stay_apart(self, store: Store) -> None:
        assert await store.send_signal("r", "a", "b:c", "1") is True
        assert await store.send_signal("r", "a:b", "c", "2") is True
        assert [(s.name, s.delivery_id) for s in await store.list_signals("r")] == [
            ("a", "b:c"),
            ("a:b", "c"),
        ]

    async def test_a_first_writer_win_on_one_run_does_not_block_the_same_key_on_another(
        self, store: Store
    ) -> None:
        one = await owned_run(store, "tenant:1")
        other = await owned_run(store, "tenant")
        first = make_step("tenant:1", "x", '"one"')
        second = make_step("tenant", "1:x", '"other"')
        assert await store.save_step(one, first) == first
        assert await store.save_step(other, second) == second
        same_key = make_step("tenant", "x", '"same key"')
        assert await store.save_step(other, same_key) == same_key

    async def test_runs_of_different_workflows_are_listed_and_changed_separately(self, store: Store) -> None:
        billing = await owned_run(store, "shared-id-1", "billing")
        shipping = await owned_run(store, "shared-id-2", "shipping")
        await store.save_step(billing, make_step("shared-id-1", "step", '"billing"'))
        await store.save_step(shipping, make_step("shared-id-2", "step", '"shipping"'))
        await store.update_run(billing, RunStatus.COMPLETED, result='"b"', release=True)
        assert [r.run_id for r in await store.list_runs(RunQuery(workflow="billing"))] == ["shared-id-1"]
        assert [r.run_id for r in await store.list_runs(RunQuery(workflow="shipping"))] == ["shared-id-2"]
        assert (await get(store, "shared-id-2")).status is RunStatus.RUNNING
        assert [s.result for s in await store.load_steps("shared-id-2")] == ['"shipping"']
        await store.delete_run("shared-id-1")
        assert [s.result for s in await store.load_steps("shared-id-2")] == ['"shipping"']

    async def test_cancelling_or_resetting_one_run_leaves_its_neighbours_alone(self, store: Store) -> None:
        await owned_run(store, "job")
        await owned_run(store, "job-2")
        await owned_run(store, "jo")
        await store.request_cancel("job")
        assert [(await get(store, r)).cancel_requested for r in ("job", "job-2", "jo")] == [
            True,
            False,
            False,
        ]
