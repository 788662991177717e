"""The core pages listings by keyset (``RunQuery.after``), and still lists every run of a store
written before ``after`` existed, which ignores it (issue 16, item 13)."""

from __future__ import annotations

from dataclasses import replace

from durable import RunQuery, RunRecord, RunStatus
from durable._inspect import PAGE_SIZE, iter_runs
from durable_memory import InMemoryStore


class IgnoresAfter(InMemoryStore):
    """A store of the previous release: it knows nothing of ``after``."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[RunQuery] = []

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        self.queries.append(query)
        return await super().list_runs(replace(query, after=None))


def _run(n: int) -> RunRecord:
    return RunRecord(f"r{n:05d}", "w", RunStatus.PENDING, "{}", "d", 1000.0 + n // 3, 1000.0)


async def test_every_run_is_listed_once_by_keyset_and_by_offset() -> None:
    total = PAGE_SIZE * 2 + 7
    for store in (InMemoryStore(), IgnoresAfter()):
        for n in range(total):
            await store.create_run(_run(n))
        listed = [run.run_id async for run in iter_runs(store, RunQuery())]
        expected = [run.run_id for run in await InMemoryStore.list_runs(store, RunQuery(limit=total))]
        assert listed == expected and len(set(listed)) == total
    assert isinstance(store, IgnoresAfter)
    # The second page shows `after` ignored; from then on it pages by offset.
    assert [q.offset for q in store.queries] == [0, 0, PAGE_SIZE, PAGE_SIZE * 2]


async def test_iter_runs_starts_after_the_callers_cursor() -> None:
    for store in (InMemoryStore(), IgnoresAfter()):
        for n in range(PAGE_SIZE + 5):
            await store.create_run(_run(n))
        everything = [run async for run in iter_runs(store, RunQuery())]
        cut = everything[PAGE_SIZE - 3]
        rest = [run.run_id async for run in iter_runs(store, RunQuery(after=(cut.created_at, cut.run_id)))]
        assert rest == [run.run_id for run in everything[PAGE_SIZE - 2 :]]
