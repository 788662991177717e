"""Due runs: ``due_runs(now)`` returns exactly the runs ``durable._lifecycle.is_due`` accepts."""

from __future__ import annotations

import time

from durable._lifecycle import is_due
from durable.store import RunStatus, Store
from durable_contract_tests._base import ContractBase
from durable_contract_tests._kit import OWNER_A, OWNER_B, get, make_run
from durable_contract_tests._matrix import CLOCKS, Operations, build

LATER = 7200.0
"""A second ``now``, two hours on: every lease of the matrix has expired and every wake time
passed by then, so a store comparing with its own clock instead of ``now`` shows it."""


def _listed(run_ids: set[str]) -> str:
    return "; ".join(sorted(run_ids)) or "none"


class DueRunContract(ContractBase, contract=True):
    """``due_runs``: which runs a worker resumes, oldest first. Required of every store (no
    capability gates it): workers poll it, and a run it misses is never resumed by them."""

    async def test_due_runs_are_exactly_the_runs_is_due_accepts_in_every_state(self, store: Store) -> None:
        matrix = await build(Operations(store))
        for label, now in (("now", time.time() + CLOCKS), (f"now + {LATER:.0f} s", time.time() + LATER)):
            expected = {run_id for run_id, run in matrix.runs.items() if is_due(run, now)}
            due = await store.due_runs(now, limit=1000)
            got = [run.run_id for run in due]
            assert len(got) == len(set(got)), f"due_runs({label}) returned a run twice: {got}"
            missing, extra = expected - set(got), set(got) - expected
            assert not missing and not extra, (
                f"due_runs({label}) must return exactly the runs durable._lifecycle.is_due accepts; "
                f"missing: {_listed(missing)}. Returned though not due: {_listed(extra)}"
            )
            assert {run.run_id: run for run in due} == {run_id: matrix.runs[run_id] for run_id in expected}

    async def test_due_runs_come_oldest_first(self, store: Store) -> None:
        matrix = await build(Operations(store))
        now = time.time() + CLOCKS
        expected = matrix.oldest_first({run_id for run_id, run in matrix.runs.items() if is_due(run, now)})
        due = await store.due_runs(now, limit=1000)
        assert [run.run_id for run in due] == expected, "due runs come in created_at order, oldest first"
        assert due == [matrix.runs[run_id] for run_id in expected]

    async def test_a_limit_smaller_than_the_number_due_returns_the_oldest_due_runs(
        self, store: Store
    ) -> None:
        matrix = await build(Operations(store))
        now = time.time() + CLOCKS
        expected = matrix.oldest_first({run_id for run_id, run in matrix.runs.items() if is_due(run, now)})
        assert len(expected) > 5
        for limit in (1, 5, len(expected) - 1):
            due = await store.due_runs(now, limit=limit)
            assert [run.run_id for run in due] == expected[:limit], f"due_runs(now, limit={limit})"

    async def test_a_run_is_due_exactly_while_is_due_says_so_as_it_moves_through_its_life(
        self, store: Store
    ) -> None:
        ops = Operations(store)
        seen: list[tuple[str, bool, bool]] = []

        async def check(moment: str) -> None:
            now = time.time() + CLOCKS
            run = await get(store, "run-1")
            listed = "run-1" in [due.run_id for due in await store.due_runs(now, limit=1000)]
            seen.append((moment, is_due(run, now), listed))

        await ops.create(make_run("run-1"))
        await check("created pending")
        first = await ops.claim("run-1", OWNER_A, 60.0)
        assert first is not None
        await check("claimed")
        await ops.update(first, RunStatus.WAITING, wake_at=time.time() + 3600, release=True)
        await check("parked until an hour from now")
        await ops.signal("run-1")
        await check("a signal delivered")
        second = await ops.claim("run-1", OWNER_B, 60.0)
        assert second is not None
        await check("claimed again")
        await ops.update(second, RunStatus.WAITING)
        await check("waiting in process")
        await ops.renew(second, 0)
        await check("its lease given back")
        third = await ops.claim("run-1", OWNER_A, 60.0)
        assert third is not None
        await check("claimed a third time")
        await ops.update(third, RunStatus.FAILED, error='{"type": "E", "message": "m"}', release=True)
        await check("failed")
        await ops.reset("run-1")
        await check("reset")
        await ops.cancel("run-1")
        await check("cancelled")
        assert [(moment, due) for moment, due, _ in seen] == [
            ("created pending", True),
            ("claimed", False),
            ("parked until an hour from now", False),
            ("a signal delivered", True),
            ("claimed again", False),
            ("waiting in process", False),
            ("its lease given back", True),
            ("claimed a third time", False),
            ("failed", False),
            ("reset", True),
            ("cancelled", False),
        ], "the run did not reach the states this test walks it through"
        wrong = [
            f"{moment}: {'missing' if due else 'listed though not due'}"
            for moment, due, listed in seen
            if due != listed
        ]
        assert not wrong, f"due_runs disagrees with is_due as the run changes: {'; '.join(wrong)}"
