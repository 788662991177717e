"""End to end: the engine's promises hold on this store, through a real ``Workflow(db=store)``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from durable import Workflow
from durable.backoff import constant
from durable.errors import NondeterminismError, RunConflictError, SignalTimeout
from durable.store import Capability, RunStatus, StepStatus, Store
from durable_contract_tests._base import ContractBase, StoreHarness

APP = "contract-app"
WAIT_LIMIT = 20.0


class Crash(Exception):
    """Stands for the failure of a task that made its run fail."""


class Apps:
    """``Workflow`` instances over the test's stores, standing for processes of one application."""

    def __init__(self, stores: StoreHarness) -> None:
        self._stores = stores
        self._apps: list[Workflow] = []
        self._first_store: Store | None = None

    async def start(self) -> Workflow:
        """The first process: a Workflow over a fresh, unopened store (the Workflow opens it)."""
        self._first_store = await self._stores.make()
        return self._track(self._first_store)

    async def restart(self, previous: Workflow) -> Workflow:
        """Another process on the same data, as after a crash of ``previous``'s process."""
        assert self._first_store is not None
        if Capability.PERSISTENT in await self._stores.capabilities():
            await previous.close()
            return self._track(await self._stores.make(same_data_as=self._first_store))
        # Nothing survives a close here: the "new process" shares the live store object instead.
        return self._track(self._first_store)

    def _track(self, store: Store) -> Workflow:
        app = Workflow(APP, db=store, default_retries=0, default_backoff=constant(0), lease_seconds=5.0)
        self._apps.append(app)
        return app

    async def close_all(self) -> None:
        for app in reversed(self._apps):
            await app.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


class WorkflowContract(ContractBase, contract=True):
    """Replay, conflicts, stored results, signals and step ids, driven by the engine."""

    @pytest_asyncio.fixture
    async def apps(self, stores: StoreHarness) -> AsyncIterator[Apps]:
        harness = Apps(stores)
        try:
            yield harness
        finally:
            await harness.close_all()

    async def test_after_a_crash_finished_steps_replay_and_only_the_rest_executes(self, apps: Apps) -> None:
        executed: Counter[str] = Counter()
        reached_c = asyncio.Event()
        hang = {"c": True}

        def define(wf: Workflow) -> Callable[..., Awaitable[list[str]]]:
            @wf.task
            async def step(name: str) -> str:
                executed[name] += 1
                if name == "c" and hang["c"]:
                    reached_c.set()
                    await asyncio.Event().wait()  # the process dies while this step runs
                return name.upper()

            @wf.workflow(id="pipeline-{source}")
            async def pipeline(source: str) -> list[str]:
                return [await step("a"), await step("b"), await step("c"), await step("d")]

            return pipeline

        first = await apps.start()
        running = asyncio.ensure_future(define(first)(source="s1"))
        await asyncio.wait_for(reached_c.wait(), WAIT_LIMIT)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert executed == {"a": 1, "b": 1, "c": 1}

        hang["c"] = False
        second = await apps.restart(first)
        assert await define(second)(source="s1") == ["A", "B", "C", "D"]
        assert executed == {"a": 1, "b": 1, "c": 2, "d": 1}
        steps = await second.get_steps("pipeline-s1")
        assert [(s.key, s.result) for s in steps] == [
            ("step", '"A"'),
            ("step#1", '"B"'),
            ("step#2", '"C"'),
            (
                "step#3",
                '"D"',
            ),
        ]

    async def test_a_failed_run_resumes_from_its_journal_when_called_again(self, apps: Apps) -> None:
        wf = await apps.start()
        executed: Counter[str] = Counter()
        fail = {"now": True}

        @wf.task
        async def charge(amount: int) -> dict[str, int]:
            executed["charge"] += 1
            return {"charged": amount}

        @wf.task
        async def ship() -> str:
            executed["ship"] += 1
            if fail["now"]:
                raise Crash("carrier down")
            return "shipped"

        @wf.workflow(id="order-{order_id}")
        async def order(order_id: str) -> list[Any]:
            return [await charge(10), await ship()]

        with pytest.raises(Crash):
            await order(order_id="1")
        run = await wf.get_run("order-1")
        assert run is not None and run.status is RunStatus.FAILED
        assert run.error_info is not None and run.error_info.message == "carrier down"
        failed = {s.key: s for s in await wf.get_steps("order-1")}
        assert (failed["ship"].status, failed["ship"].attempts) == (StepStatus.FAILED, 1)
        fail["now"] = False
        assert await order(order_id="1") == [{"charged": 10}, "shipped"]
        assert executed == {"charge": 1, "ship": 2}
        run = await wf.get_run("order-1")
        assert run is not None and (run.status, run.error) == (RunStatus.COMPLETED, None)

    async def test_replay_with_changed_arguments_raises_nondeterminism_error(self, apps: Apps) -> None:
        wf = await apps.start()
        state = {"arg": 1, "fail": True}

        @wf.task
        async def first(v: int) -> int:
            return v

        @wf.task
        async def second() -> None:
            if state["fail"]:
                raise Crash()

        @wf.workflow(id="nd")
        async def flow() -> None:
            await first(state["arg"])
            await second()

        with pytest.raises(Crash):
            await flow()
        state.update(arg=2, fail=False)
        with pytest.raises(NondeterminismError) as raised:
            await flow()
        assert (raised.value.run_id, raised.value.key) == ("nd", "first")

    async def test_calling_a_run_id_with_other_inputs_raises_run_conflict_error(self, apps: Apps) -> None:
        wf = await apps.start()
        executed: list[str] = []

        @wf.workflow
        async def greet(name: str) -> str:
            executed.append(name)
            return f"hello {name}"

        assert await greet.run("greeting", "ada") == "hello ada"
        with pytest.raises(RunConflictError, match="greeting"):
            await greet.run("greeting", "bob")
        assert executed == ["ada"]

    async def test_a_completed_run_returns_its_stored_result_without_executing_again(
        self, apps: Apps
    ) -> None:
        executed: Counter[str] = Counter()

        def define(wf: Workflow) -> Callable[..., Awaitable[dict[str, Any]]]:
            @wf.task
            async def compute(n: int) -> int:
                executed["task"] += 1
                return n * 2

            @wf.workflow(id="report-{n}")
            async def report(n: int) -> dict[str, Any]:
                executed["body"] += 1
                return {"n": n, "double": await compute(n), "none": None}

            return report

        first = await apps.start()
        expected = {"n": 21, "double": 42, "none": None}
        report = define(first)
        assert await report(n=21) == expected
        assert await report(n=21) == expected
        second = await apps.restart(first)
        assert await define(second)(n=21) == expected
        assert executed == {"task": 1, "body": 1}

    async def test_a_workflow_used_from_several_tasks_at_once_opens_its_store_once(self, apps: Apps) -> None:
        wf = await apps.start()

        @wf.workflow(id="job-{n}")
        async def job(n: int) -> int:
            return n

        results = await asyncio.gather(
            *(job(n=n) for n in range(4)), wf.get_run("job-0"), wf.get_signals("x")
        )
        assert results[:4] == [0, 1, 2, 3]
        assert len(await wf.list_runs()) == 4

    async def test_falsy_signal_payloads_are_delivered_as_sent(self, apps: Apps) -> None:
        wf = await apps.start()
        sent: list[Any] = [False, 0, None, "", [], {}, 0.0]

        @wf.workflow(id="falsy")
        async def collect() -> list[Any]:
            return [await wf.signal("value") for _ in sent]

        for i, payload in enumerate(sent):
            assert await wf.complete("falsy", "value", payload, delivery_id=f"d{i}", create=True) is True
        received = await asyncio.wait_for(collect(), WAIT_LIMIT)
        assert received == sent
        assert [type(v) for v in received] == [type(v) for v in sent]

    async def test_a_signal_sent_while_the_run_waits_resumes_it(self, apps: Apps) -> None:
        wf = await apps.start()
        executed: list[str] = []

        @wf.task
        async def notify(decision: dict[str, bool]) -> str:
            executed.append("notify")
            return "approved" if decision["ok"] else "rejected"

        @wf.workflow(id="approval-{doc}")
        async def approval(doc: str) -> str:
            return await notify(await wf.signal("approve"))

        await wf.get_store()  # opened first: concurrent first use has its own test
        running = asyncio.ensure_future(approval(doc="d1"))

        async def is_waiting() -> bool:
            run = await wf.get_run("approval-d1")
            return run is not None and run.status is RunStatus.WAITING

        await eventually(is_waiting, "the run waits for its signal")
        assert await wf.complete("approval-d1", "approve", {"ok": True}, delivery_id="web-1") is True
        assert await asyncio.wait_for(running, WAIT_LIMIT) == "approved"
        assert executed == ["notify"]
        # Replays return the checkpointed delivery, and the retried webhook is recorded once.
        assert await wf.complete("approval-d1", "approve", {"ok": False}, delivery_id="web-1") is False
        assert await approval(doc="d1") == "approved"
        assert len(await wf.get_signals("approval-d1")) == 1

    async def test_signals_cannot_cross_runs_whose_ids_concatenate_alike(self, apps: Apps) -> None:
        wf = await apps.start()

        @wf.workflow
        async def listen(name: str) -> Any:
            return await wf.signal(name)

        await wf.complete("a:b", "c", "for a:b", create=True)
        await wf.complete("a", "b:c", "for a", create=True)
        assert await asyncio.wait_for(listen.run("a:b", "c"), WAIT_LIMIT) == "for a:b"
        assert await asyncio.wait_for(listen.run("a", "b:c"), WAIT_LIMIT) == "for a"

    async def test_a_signal_wait_with_a_timeout_raises_signal_timeout(self, apps: Apps) -> None:
        wf = await apps.start()

        @wf.workflow(id="impatient")
        async def impatient() -> Any:
            return await wf.signal("never", timeout=0.2)

        with pytest.raises(SignalTimeout):
            await asyncio.wait_for(impatient(), WAIT_LIMIT)
        run = await wf.get_run("impatient")
        assert run is not None and run.status is RunStatus.FAILED

    async def test_a_step_id_loop_resumes_only_the_remaining_items(self, apps: Apps) -> None:
        wf = await apps.start()
        executed: list[str] = []
        fail_at = {"item": "item3"}

        @wf.task
        async def process(item: str) -> str:
            if item == fail_at["item"]:
                raise Crash(item)
            executed.append(item)
            return item.upper()

        @wf.workflow(id="batch-{batch}")
        async def batch(batch: str) -> list[str]:
            return [await process(f"item{i}", step_id=f"item-{i}") for i in range(5)]  # type: ignore[call-arg]

        with pytest.raises(Crash):
            await batch(batch="b1")
        fail_at["item"] = ""
        assert await batch(batch="b1") == ["ITEM0", "ITEM1", "ITEM2", "ITEM3", "ITEM4"]
        assert executed == ["item0", "item1", "item2", "item3", "item4"]
        keys = sorted(s.key for s in await wf.get_steps("batch-b1"))
        assert keys == [f"process@item-{i}" for i in range(5)]

    async def test_gathered_tasks_are_checkpointed_under_call_order_keys(self, apps: Apps) -> None:
        wf = await apps.start()
        delays = [0.03, 0.0, 0.015]
        executed: list[int] = []

        @wf.task
        async def work(i: int) -> int:
            executed.append(i)
            await asyncio.sleep(delays[i])
            return i * 10

        @wf.workflow(id="fan-out")
        async def fan() -> list[int]:
            return list(await asyncio.gather(*(work(i) for i in range(3))))

        assert await fan() == [0, 10, 20]
        assert {s.key: s.result for s in await wf.get_steps("fan-out")} == {
            "work": "0",
            "work#1": "10",
            "work#2": "20",
        }
        assert sorted(executed) == [0, 1, 2]
