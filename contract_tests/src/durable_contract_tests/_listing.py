"""Listing runs: every ``RunQuery`` filter, order and paging; due runs; deletion."""

from __future__ import annotations

import asyncio
import time

from durable.store import RunQuery, RunRecord, RunStatus, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import get, lease_of, make_run, make_step, owned_run

T0 = 1_700_000_000.0


async def seed(store: Store) -> list[RunRecord]:
    """Seven runs of two workflows, created one second apart, in a mix of statuses."""
    plan = [
        ("order-1", "orders", RunStatus.PENDING),
        ("order-2", "orders", RunStatus.COMPLETED),
        ("order-3", "orders", RunStatus.FAILED),
        ("mail-1", "mails", RunStatus.WAITING),
        ("order-10", "orders", RunStatus.CANCELLED),
        ("mail-2", "mails", RunStatus.RUNNING),
        ("mail-3", "mails", RunStatus.PENDING),
    ]
    for i, (run_id, workflow, status) in enumerate(plan):
        run = make_run(run_id, workflow, created_at=T0 + i, owner="seeder")
        await store.create_run(run)
        if status is not RunStatus.RUNNING:
            await store.update_run(lease_of(run), status, release=True)
    return [await get(store, run_id) for run_id, _, _ in plan]


def ids(runs: list[RunRecord]) -> list[str]:
    return [run.run_id for run in runs]


class ListingContract(ContractBase, contract=True):
    """``list_runs``, ``due_runs`` and ``delete_run``."""

    async def test_runs_are_listed_newest_first(self, store: Store) -> None:
        await seed(store)
        listed = await store.list_runs(RunQuery())
        assert ids(listed) == ["mail-3", "mail-2", "order-10", "mail-1", "order-3", "order-2", "order-1"]

    async def test_runs_created_at_the_same_time_are_ordered_by_run_id(self, store: Store) -> None:
        for run_id in ("b", "c", "a"):
            await store.create_run(make_run(run_id, created_at=T0))
        await store.create_run(make_run("z-older", created_at=T0 - 1))
        assert ids(await store.list_runs(RunQuery())) == ["a", "b", "c", "z-older"]

    async def test_listing_filters_by_status(self, store: Store) -> None:
        await seed(store)
        pending = await store.list_runs(RunQuery(statuses=frozenset({RunStatus.PENDING})))
        assert ids(pending) == ["mail-3", "order-1"]
        final = frozenset({RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED})
        assert ids(await store.list_runs(RunQuery(statuses=final))) == ["order-10", "order-3", "order-2"]
        assert await store.list_runs(RunQuery(statuses=frozenset())) == []

    async def test_listing_filters_by_workflow(self, store: Store) -> None:
        await seed(store)
        assert ids(await store.list_runs(RunQuery(workflow="mails"))) == ["mail-3", "mail-2", "mail-1"]
        assert await store.list_runs(RunQuery(workflow="mail")) == []

    async def test_listing_filters_by_id_prefix(self, store: Store) -> None:
        await seed(store)
        assert ids(await store.list_runs(RunQuery(id_prefix="order-1"))) == ["order-10", "order-1"]
        assert ids(await store.list_runs(RunQuery(id_prefix="order-10"))) == ["order-10"]
        assert await store.list_runs(RunQuery(id_prefix="ORDER")) == []

    async def test_an_id_prefix_with_wildcard_characters_matches_them_literally(self, store: Store) -> None:
        for run_id in ("a%b", "axb", "a_c", "ayc", "a\\d", "a[e]", "ae"):
            await store.create_run(make_run(run_id, created_at=T0))
        assert ids(await store.list_runs(RunQuery(id_prefix="a%"))) == ["a%b"]
        assert ids(await store.list_runs(RunQuery(id_prefix="a_"))) == ["a_c"]
        assert ids(await store.list_runs(RunQuery(id_prefix="a\\"))) == ["a\\d"]
        assert ids(await store.list_runs(RunQuery(id_prefix="a["))) == ["a[e]"]
        assert ids(await store.list_runs(RunQuery(id_prefix="a*"))) == []

    async def test_listing_filters_by_creation_time_from_inclusive_to_exclusive(self, store: Store) -> None:
        await seed(store)
        window = RunQuery(created_after=T0 + 2, created_before=T0 + 5)
        assert ids(await store.list_runs(window)) == ["order-10", "mail-1", "order-3"]
        assert ids(await store.list_runs(RunQuery(created_after=T0 + 6))) == ["mail-3"]
        assert ids(await store.list_runs(RunQuery(created_before=T0 + 1))) == ["order-1"]

    async def test_listing_filters_by_last_update(self, store: Store) -> None:
        # Compared with the times the store wrote (its clock may be a server's), not this process's.
        seeded = await seed(store)
        await asyncio.sleep(0.02)
        lease = await owned_run(store, "late", "orders")
        await store.update_run(lease, RunStatus.COMPLETED, result="1", release=True)
        late = (await get(store, "late")).updated_at
        stored = {run.run_id: run.updated_at for run in await store.list_runs(RunQuery())}
        assert max(t for run_id, t in stored.items() if run_id != "late") < late
        untouched = await store.list_runs(RunQuery(updated_before=late))  # exclusive
        assert sorted(ids(untouched)) == sorted(run.run_id for run in seeded)
        assert ids(await store.list_runs(RunQuery(updated_before=late + 1e-3))) == ids(
            await store.list_runs(RunQuery())
        )

    async def test_filters_combine(self, store: Store) -> None:
        await seed(store)
        query = RunQuery(
            workflow="orders",
            statuses=frozenset({RunStatus.PENDING, RunStatus.FAILED, RunStatus.CANCELLED}),
            id_prefix="order-",
            created_after=T0 + 1,
        )
        assert ids(await store.list_runs(query)) == ["order-10", "order-3"]

    async def test_limit_and_offset_page_through_the_ordered_runs(self, store: Store) -> None:
        await seed(store)
        everything = ids(await store.list_runs(RunQuery()))
        pages = [ids(await store.list_runs(RunQuery(limit=3, offset=offset))) for offset in (0, 3, 6, 9)]
        assert pages == [everything[0:3], everything[3:6], everything[6:7], []]
        mails = await store.list_runs(RunQuery(workflow="mails", limit=1, offset=1))
        assert ids(mails) == ["mail-2"]

    async def test_after_pages_by_the_last_run_of_the_previous_page(self, store: Store) -> None:
        await seed(store)
        for run_id in ("tie-b", "tie-a", "tie-c"):  # ties on created_at are ordered by run id
            await store.create_run(make_run(run_id, created_at=T0 + 3))
        everything = ids(await store.list_runs(RunQuery()))
        pages: list[list[str]] = []
        after = None
        while len(pages) < 10:
            page = await store.list_runs(RunQuery(limit=3, after=after))
            pages.append(ids(page))
            if len(page) < 3:
                break
            after = (page[-1].created_at, page[-1].run_id)
        assert [run_id for page in pages for run_id in page] == everything
        assert all(len(page) == 3 for page in pages[:-1])

    async def test_after_combines_with_the_other_filters(self, store: Store) -> None:
        runs = {run.run_id: run for run in await seed(store)}
        order_3 = runs["order-3"]
        listed = await store.list_runs(RunQuery(workflow="orders", after=(order_3.created_at, "order-3")))
        assert ids(listed) == ["order-2", "order-1"]
        failed_or_pending = frozenset({RunStatus.PENDING, RunStatus.FAILED})
        mail_3 = runs["mail-3"]
        page = await store.list_runs(
            RunQuery(statuses=failed_or_pending, after=(mail_3.created_at, "mail-3"))
        )
        assert ids(page) == ["order-3", "order-1"]

    async def test_listing_returns_whole_records(self, store: Store) -> None:
        runs = await seed(store)
        listed = {run.run_id: run for run in await store.list_runs(RunQuery(limit=1000))}
        assert listed == {run.run_id: run for run in runs}

    async def test_due_runs_are_the_ones_a_worker_should_resume(self, store: Store) -> None:
        now = time.time()
        await store.create_run(make_run("pending"))
        await owned_run(store, "live-owner")
        interrupted = await owned_run(store, "interrupted")
        await store.update_run(interrupted, RunStatus.RUNNING, release=True)
        asleep = await owned_run(store, "asleep")
        await store.update_run(asleep, RunStatus.WAITING, wake_at=now + 3600, release=True)
        awake = await owned_run(store, "awake")
        await store.update_run(awake, RunStatus.WAITING, wake_at=now - 1, release=True)
        for status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
            lease = await owned_run(store, status.value)
            await store.update_run(lease, status, release=True)
        due = await store.due_runs(time.time())
        assert sorted(ids(due)) == ["awake", "interrupted", "pending"]
        assert len(await store.due_runs(time.time(), limit=2)) == 2

    async def test_deleting_a_run_removes_its_steps_and_signals_and_nothing_else(self, store: Store) -> None:
        doomed = await owned_run(store, "doomed")
        kept = await owned_run(store, "kept")
        await store.save_step(doomed, make_step("doomed", "a"))
        await store.save_step(kept, make_step("kept", "a"))
        await store.send_signal("doomed", "go", "", '"x"')
        await store.send_signal("kept", "go", "", '"y"')
        assert await store.delete_run("doomed") is True
        assert await store.get_run("doomed") is None
        assert await store.load_steps("doomed") == []
        assert await store.list_signals("doomed") == []
        assert ids(await store.list_runs(RunQuery())) == ["kept"]
        assert len(await store.load_steps("kept")) == 1
        assert [s.payload for s in await store.list_signals("kept")] == ['"y"']

    async def test_deleting_an_unknown_run_returns_false(self, store: Store) -> None:
        assert await store.delete_run("no-such-run") is False

    async def test_a_deleted_run_id_can_be_created_again_from_scratch(self, store: Store) -> None:
        lease = await owned_run(store, "again")
        await store.save_step(lease, make_step("again", "a"))
        await store.delete_run("again")
        fresh = make_run("again", inputs='{"v": 2}')
        assert await store.create_run(fresh) == (fresh, True)
        assert await store.load_steps("again") == []
