"""Persistence and sharing: a reopened store keeps everything; two processes lose nothing."""

from __future__ import annotations

import asyncio
import json
import pickle
import sys
import time
from typing import Any

import pytest

from durable.errors import LeaseLost
from durable.store import Capability, RunQuery, RunStatus, StepStatus, Store
from durable_contract_tests import _child
from durable_contract_tests._base import ContractBase, StoreHarness, requires
from durable_contract_tests._kit import get, make_run, make_step, owned_run

PROCESSES = 2
RUNS_PER_PROCESS = 40
STEPS_PER_RUN = 3
SIGNALS_PER_PROCESS = 40
CHILD_TIMEOUT = 120.0


async def snapshot(store: Store, run_ids: list[str]) -> dict[str, Any]:
    return {
        "runs": await store.list_runs(RunQuery(limit=10_000)),
        "steps": {run_id: await store.load_steps(run_id) for run_id in run_ids},
        "signals": {run_id: await store.list_signals(run_id) for run_id in run_ids},
    }


class PersistenceContract(ContractBase, contract=True):
    """Closing and reopening (``persistent``), and sharing across processes (``multi-process``)."""

    @requires(Capability.PERSISTENT)
    async def test_a_reopened_store_keeps_runs_steps_and_signals(
        self, store: Store, stores: StoreHarness
    ) -> None:
        done = await owned_run(store, "done")
        await store.save_step(done, make_step("done", "a", '"A"', finished_at=1.0))
        await store.save_step(done, make_step("done", "b", "null", finished_at=2.0))
        await store.update_run(done, RunStatus.COMPLETED, result='["A", null]', release=True)
        waiting = await owned_run(store, "waiting")
        await store.save_step(waiting, make_step("waiting", "x", status=StepStatus.FAILED))
        await store.update_run(waiting, RunStatus.WAITING, wake_at=2_000_000_000.0, release=True)
        await store.send_signal("waiting", "approve", "hook-1", '{"ok": false}')
        await store.send_signal("nobody-yet", "early", "", "0")
        await store.request_cancel("done")
        before = await snapshot(store, ["done", "waiting", "nobody-yet"])
        await store.close()

        reopened = await stores.reopen(store)
        assert await snapshot(reopened, ["done", "waiting", "nobody-yet"]) == before
        assert len(before["runs"]) == 2

    @requires(Capability.PERSISTENT)
    async def test_a_reopened_store_keeps_fencing_and_seq_order(
        self, store: Store, stores: StoreHarness
    ) -> None:
        stale = await owned_run(store, "run-1")
        await store.update_run(stale, RunStatus.RUNNING, release=True)
        current = await store.claim_run("run-1", "owner-b", 60.0)
        assert current is not None
        await store.send_signal("run-1", "s", "d1", "1")
        last_seq = (await store.list_signals("run-1"))[-1].seq
        await store.close()

        reopened = await stores.reopen(store)
        assert await reopened.claim_run("run-1", "owner-c", 60.0) is None
        with pytest.raises(LeaseLost):
            await reopened.save_step(stale, make_step("run-1", "late"))
        await reopened.save_step(current, make_step("run-1", "ok"))
        assert [s.key for s in await reopened.load_steps("run-1")] == ["ok"]
        assert await reopened.send_signal("run-1", "s", "d1", "1") is False
        await reopened.send_signal("run-1", "s", "d2", "2")
        assert (await reopened.list_signals("run-1"))[-1].seq > last_seq

    @requires(Capability.PERSISTENT)
    async def test_closing_twice_is_harmless(self, store: Store, stores: StoreHarness) -> None:
        await owned_run(store, "run-1")
        await store.close()
        await store.close()
        reopened = await stores.reopen(store)
        assert (await get(reopened, "run-1")).run_id == "run-1"

    @requires(Capability.MULTI_PROCESS)
    async def test_several_store_objects_opening_fresh_data_at_once_all_succeed(
        self, stores: StoreHarness
    ) -> None:
        for _ in range(5):  # a few rounds: start-up races show up only some of the time
            first = await stores.make()
            others = [await stores.make(same_data_as=first) for _ in range(3)]
            # As when several processes or workers start at once on a new database.
            opened = await asyncio.gather(*(stores.open(store) for store in [first, *others]))
            await owned_run(opened[0], "run-1")
            assert [(await get(store, "run-1")).run_id for store in opened] == ["run-1"] * 4
            await stores.close_all()

    @requires(Capability.MULTI_PROCESS)
    async def test_two_store_objects_on_the_same_data_see_each_others_writes(
        self, store: Store, stores: StoreHarness
    ) -> None:
        other = await stores.reopen(store)
        lease = await owned_run(store, "run-1")
        assert (await get(other, "run-1")).owner == lease.owner
        assert await other.claim_run("run-1", "owner-b", 30.0) is None
        await store.save_step(lease, make_step("run-1", "a"))
        assert [s.key for s in await other.load_steps("run-1")] == ["a"]
        await other.send_signal("run-1", "go", "", "1")
        assert [s.payload for s in await store.list_signals("run-1")] == ["1"]

    @requires(Capability.MULTI_PROCESS)
    async def test_concurrent_creators_on_two_store_objects_create_one_run(
        self, store: Store, stores: StoreHarness
    ) -> None:
        other = await stores.reopen(store)
        candidates = [make_run("contested", inputs=f'{{"i": {i}}}') for i in range(40)]
        outcomes = await asyncio.gather(
            *((store if i % 2 else other).create_run(run) for i, run in enumerate(candidates))
        )
        assert sum(created for _, created in outcomes) == 1
        winner = next(stored for stored, created in outcomes if created)
        assert {stored for stored, _ in outcomes} == {winner}

    @requires(Capability.MULTI_PROCESS)
    async def test_two_processes_writing_at_once_lose_nothing(
        self, store: Store, stores: StoreHarness
    ) -> None:
        await store.create_run(make_run("shared"))
        blueprints = [await stores.blueprint(store) for _ in range(PROCESSES)]
        start_at = time.time() + 2.0  # both children connect first, then write at the same moment
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                _child.__name__,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(PROCESSES)
        ]
        orders = [
            _child.Order(
                name=f"p{k}",
                start_at=start_at,
                runs=RUNS_PER_PROCESS,
                steps=STEPS_PER_RUN,
                signals=SIGNALS_PER_PROCESS,
                shared_run="shared",
            )
            for k in range(PROCESSES)
        ]
        outputs = await asyncio.wait_for(
            asyncio.gather(
                *(
                    child.communicate(pickle.dumps((blueprint, order)))
                    for child, blueprint, order in zip(children, blueprints, orders, strict=True)
                )
            ),
            CHILD_TIMEOUT,
        )
        reports = []
        for child, (out, err) in zip(children, outputs, strict=True):
            assert child.returncode == 0, (
                f"child failed ({child.returncode}):\n{err.decode(errors='replace')}"
            )
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        assert [r["errors"] for r in reports] == [[]] * PROCESSES
        # Exactly one process created (and then executed) the contested run.
        assert sum(r["created_contested"] for r in reports) == 1

        runs = await store.list_runs(RunQuery(limit=10_000))
        expected = {"shared", "contested"} | {
            f"p{k}-{i}" for k in range(PROCESSES) for i in range(RUNS_PER_PROCESS)
        }
        assert {run.run_id for run in runs} == expected
        for k in range(PROCESSES):
            for i in range(RUNS_PER_PROCESS):
                run = await get(store, f"p{k}-{i}")
                assert (run.status, run.result) == (RunStatus.COMPLETED, json.dumps(i))
                steps = await store.load_steps(run.run_id)
                assert sorted(s.key for s in steps) == [f"s{j}" for j in range(STEPS_PER_RUN)]
        deliveries = await store.list_signals("shared", "note")
        assert sorted(s.delivery_id for s in deliveries) == sorted(
            f"p{k}-{j}" for k in range(PROCESSES) for j in range(SIGNALS_PER_PROCESS)
        )
        assert len({s.seq for s in deliveries}) == len(deliveries)
        for k in range(PROCESSES):
            mine = [int(s.payload) for s in deliveries if s.delivery_id.startswith(f"p{k}-")]
            assert mine == list(range(SIGNALS_PER_PROCESS)), "one process's deliveries arrived out of order"
        contested_steps = await store.load_steps("contested")
        assert len(contested_steps) == 1
        assert (await get(store, "contested")).status is RunStatus.COMPLETED
