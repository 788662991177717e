"""The execution semantics of issue 2, end to end through ``Workflow`` on memory and SQLite."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from durable import RunStatus, Workflow
from durable.backoff import constant, exponential, linear
from durable.errors import (
    ConfigurationError,
    NondeterminismError,
    NonRetryableError,
    RunConflictError,
    SerializationError,
    SignalTimeout,
    StoreUnavailable,
)
from durable.store import ErrorInfo
from durable.testing import virtual_time

from helpers import Calls, Crash, until_status


async def test_finished_steps_replay_and_only_the_rest_executes(wf: Workflow, calls: Calls) -> None:
    state = {"crash": True}

    @wf.task(retries=0)
    async def step(name: str) -> str:
        calls(name)
        if name == "c" and state["crash"]:
            raise Crash("boom")
        return name.upper()

    @wf.workflow(id="pipe-{x}")
    async def pipe(x: str) -> list[str]:
        return [await step("a"), await step("b"), await step("c")]

    with pytest.raises(Crash):
        await pipe(x="1")
    assert (await wf.get_run("pipe-1")).status is RunStatus.FAILED  # type: ignore[union-attr]
    state["crash"] = False
    assert await pipe(x="1") == ["A", "B", "C"]
    assert calls.log == ["a", "b", "c", "c"]


async def test_completed_run_returns_stored_result_without_running_body(wf: Workflow, calls: Calls) -> None:
    @wf.workflow(id="done-{n}")
    async def done(n: int) -> dict[str, int]:
        calls("body")
        return {"n": n}

    assert await done(n=3) == {"n": 3}
    assert await done(n=3) == {"n": 3}
    assert calls.count("body") == 1


async def test_same_run_id_with_different_inputs_raises_conflict(wf: Workflow) -> None:
    @wf.workflow
    async def greet(name: str, punct: str = "!") -> str:
        return name + punct

    await greet.run("greeting", "ada")
    with pytest.raises(RunConflictError, match="greeting"):
        await greet.run("greeting", "bob")


async def test_replay_with_changed_arguments_raises_nondeterminism(wf: Workflow) -> None:
    arg = {"v": 1}
    fail = {"now": True}

    @wf.task(retries=0)
    async def first(v: int) -> int:
        return v

    @wf.task(retries=0)
    async def second() -> None:
        if fail["now"]:
            raise Crash("crash after first")

    @wf.workflow(id="nd")
    async def flow() -> None:
        await first(arg["v"])
        await second()

    with pytest.raises(Crash):
        await flow()
    arg["v"], fail["now"] = 2, False
    with pytest.raises(NondeterminismError) as info:
        await flow()
    assert info.value.run_id == "nd" and info.value.key == "first"
    assert "first" in str(info.value) and "nd" in str(info.value)


async def test_replay_reaching_another_task_raises_instead_of_returning_its_result(wf: Workflow) -> None:
    branch = {"take_a": True}

    @wf.task(retries=0)
    async def a() -> str:
        return "a"

    @wf.task(retries=0)
    async def b() -> str:
        return "b"

    @wf.task(retries=0)
    async def boom() -> None:
        if branch["take_a"]:
            raise Crash()

    @wf.workflow(id="branchy")
    async def flow() -> str:
        # Both branches call a task at the same position: keys differ by task name.
        value = await (a() if branch["take_a"] else b())
        await boom()
        return value

    with pytest.raises(Crash):
        await flow()
    branch["take_a"] = False
    assert await flow() == "b"  # "b" has its own key; the recorded "a" is never returned for it


async def test_gather_assigns_keys_in_call_order_and_replays_deterministically(
    wf: Workflow, calls: Calls
) -> None:
    delays = {0: 0.03, 1: 0.0, 2: 0.015}

    @wf.task
    async def work(i: int) -> int:
        calls(f"work{i}")
        await asyncio.sleep(delays[i])
        return i * 10

    @wf.workflow(id="fan")
    async def fan() -> list[int]:
        return list(await asyncio.gather(work(0), work(1), work(2)))

    assert await fan() == [0, 10, 20]
    steps = {s.key: s.result for s in await wf.get_steps("fan")}
    assert steps == {"work": "0", "work#1": "10", "work#2": "20"}


async def test_explicit_step_id_cannot_collide_with_automatic_key(wf: Workflow, calls: Calls) -> None:
    @wf.task
    async def t(v: int) -> int:
        calls(str(v))
        return v

    @wf.workflow(id="collide")
    async def flow() -> list[int]:
        return [await t(1), await t(2), await t.with_step_id("t#1")(3)]

    assert await flow() == [1, 2, 3]
    assert sorted(s.key for s in await wf.get_steps("collide")) == ["t", "t#1", "t@t%231"]


async def test_step_id_loop_resumes_only_remaining_items(wf: Workflow, calls: Calls) -> None:
    stop_at = {"i": 3}

    @wf.task(retries=0)
    async def process_item(item: str) -> str:
        if item == f"item{stop_at['i']}":
            raise Crash()
        calls(item)
        return item

    @wf.workflow(id="batch-{batch_id}")
    async def process_batch(batch_id: str) -> None:
        for i, item in enumerate(f"item{n}" for n in range(5)):
            await process_item(item, step_id=f"item-{i}")

    with pytest.raises(Crash):
        await process_batch(batch_id="b1")
    stop_at["i"] = -1
    await process_batch(batch_id="b1")
    assert calls.log == ["item0", "item1", "item2", "item3", "item4"]


async def test_nested_tasks_are_keyed_under_their_parent(wf: Workflow) -> None:
    @wf.task
    async def inner(v: int) -> int:
        return v + 1

    @wf.task
    async def outer(v: int) -> int:
        return await inner(v) + await inner(v)

    @wf.workflow(id="nest")
    async def flow() -> int:
        return await outer(1) + await inner(0)

    assert await flow() == 5
    keys = sorted(s.key for s in await wf.get_steps("nest"))
    assert keys == ["inner", "outer", "outer/inner", "outer/inner#1"]


async def test_unserialisable_result_names_the_task_and_does_not_rerun_the_body(
    wf: Workflow, calls: Calls
) -> None:
    @wf.task(retries=3)
    async def send_email() -> object:
        calls("send")
        return object()

    @wf.workflow(id="mail")
    async def flow() -> None:
        await send_email()

    with pytest.raises(SerializationError, match="send_email"):
        await flow()
    assert calls.count("send") == 1


async def test_transient_checkpoint_write_failure_retries_the_write_not_the_body(
    wf: Workflow, calls: Calls
) -> None:
    store = await wf.get_store()
    original = store.save_step
    failures = {"left": 2}

    async def flaky_save(lease: Any, step: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("simulated: database is locked")
        return await original(lease, step)

    store.save_step = flaky_save  # type: ignore[method-assign]

    @wf.task(retries=3)
    async def charge() -> str:
        calls("charge")
        return "ok"

    @wf.workflow(id="pay")
    async def flow() -> str:
        return await charge()

    assert await flow() == "ok"
    assert calls.count("charge") == 1 and failures["left"] == 0


async def test_retries_make_retries_plus_one_attempts_with_backoff_waits(wf: Workflow, calls: Calls) -> None:
    tried_at: list[float] = []

    @wf.task(retries=3, backoff=exponential(base=2, max=60))
    async def flaky() -> None:
        calls("try")
        tried_at.append(clock.time())
        raise ValueError("nope")

    @wf.workflow(id="retry")
    async def flow() -> None:
        await flaky()

    async with virtual_time() as clock:  # the waits pass in virtual time, each one a jump
        with pytest.raises(ValueError):
            await flow()
    assert calls.count("try") == 4
    assert [round(jump, 1) for jump in clock.jumps] == [2.0, 4.0, 8.0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(tried_at)]
    assert [round(gap, 1) for gap in gaps] == [2.0, 4.0, 8.0]
    failed = {s.key: s for s in await wf.get_steps("retry")}["flaky"]
    assert failed.status.value == "failed" and failed.attempts == 4
    info = ErrorInfo.from_json(failed.error or "")
    assert (info.type, info.message) == ("builtins.ValueError", "nope")
    assert info.attempts == (("builtins.ValueError", "nope"),) * 4


def test_backoff_strategies_wait_what_the_readme_says() -> None:
    assert [exponential(base=2, max=60)(k) for k in range(1, 7)] == [2, 4, 8, 16, 32, 60]
    assert [linear(start=2, step=3)(k) for k in (1, 2, 3)] == [2, 5, 8]
    assert [constant(5)(k) for k in (1, 2, 3)] == [5, 5, 5]
    assert exponential(base=2, max=60)(10_000) == 60


async def test_retry_on_filters_and_non_retryable_errors_stop_at_once(wf: Workflow, calls: Calls) -> None:
    @wf.task(retries=5, retry_on=ConnectionError)
    async def only_conn(kind: str) -> None:
        calls(kind)
        raise (ConnectionError if kind == "conn" else KeyError)(kind)

    @wf.task(retries=5)
    async def refuses() -> None:
        calls("refuse")
        raise NonRetryableError("card declined")

    with pytest.raises(KeyError):
        await only_conn("key")
    with pytest.raises(ConnectionError):
        await only_conn("conn")
    with pytest.raises(NonRetryableError):
        await refuses()
    assert (calls.count("key"), calls.count("conn"), calls.count("refuse")) == (1, 6, 1)


def test_negative_retries_are_rejected_with_the_task_name() -> None:
    wf = Workflow("x", db="memory://")
    with pytest.raises(ConfigurationError, match=r"my_task.*retries"):

        @wf.task(retries=-1)
        async def my_task() -> None: ...


async def test_task_outside_a_workflow_is_a_plain_function_with_retries(calls: Calls) -> None:
    wf = Workflow("plain", db="memory://", default_backoff=constant(0))

    @wf.task(retries=2)
    async def sometimes() -> int:
        calls("x")
        if calls.count("x") < 3:
            raise OSError("flaky")
        return 7

    assert await sometimes() == 7
    assert calls.count("x") == 3
    assert await wf.list_runs() == []


async def test_task_timeout_counts_per_attempt(wf: Workflow, calls: Calls) -> None:
    @wf.task(retries=1, timeout=0.05)
    async def slow() -> None:
        calls("slow")
        await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        await slow()
    assert calls.count("slow") == 2


async def test_run_id_template_uses_only_bound_parameters(wf: Workflow) -> None:
    @wf.workflow(id="order-{order_id}")
    async def order(order_id: str, extra: dict[str, str]) -> str:
        return order_id

    # A dict argument with an "order_id" key must not change the id.
    await order("42", {"order_id": "evil"})
    assert await wf.get_run("order-42") is not None
    assert await wf.get_run("order-evil") is None


async def test_default_run_id_does_not_collide_when_arguments_contain_separators(wf: Workflow) -> None:
    @wf.workflow
    async def pair(a: str, b: str) -> str:
        return a + "|" + b

    assert pair.run_id_for("x-y", "z") != pair.run_id_for("x", "y-z")
    assert await pair("x-y", "z") == "x-y|z"
    assert await pair("x", "y-z") == "x|y-z"


async def test_unknown_template_field_is_a_clear_error(wf: Workflow) -> None:
    @wf.workflow(id="o-{nope}")
    async def flow(order_id: str) -> None: ...

    with pytest.raises(ConfigurationError, match="nope"):
        await flow("1")


async def test_status_is_tracked_with_error_details(wf: Workflow) -> None:
    @wf.task(retries=0)
    async def explode() -> None:
        raise RuntimeError("kaput")

    @wf.workflow(id="bad")
    async def flow() -> None:
        await explode()

    with pytest.raises(RuntimeError):
        await flow()
    run = await wf.get_run("bad")
    assert run is not None and run.status is RunStatus.FAILED
    error = run.error_info
    assert error is not None and error.type == "builtins.RuntimeError" and error.message == "kaput"
    assert "explode" in error.traceback
    assert run.owner is None  # the lease is released so the run can be resumed at once


class TestSignals:
    async def test_falsy_payloads_are_delivered_as_sent(self, wf: Workflow) -> None:
        @wf.workflow(id="falsy-{kind}")
        async def wait_one(kind: str) -> Any:
            return await wf.signal("value")

        for kind, payload in [("false", False), ("zero", 0), ("none", None), ("empty", "")]:
            task = asyncio.ensure_future(wait_one(kind))
            await until_status(wf, f"falsy-{kind}", RunStatus.WAITING)
            assert await wf.complete(f"falsy-{kind}", "value", payload) is True
            assert await task == payload

    async def test_signal_before_the_wait_and_replay_after_restart(self, wf: Workflow, calls: Calls) -> None:
        @wf.task
        async def prepare(order_id: str) -> None:
            calls("prepare")

        @wf.task
        async def ship(order_id: str) -> None:
            calls("ship")

        @wf.workflow(id="order-{order_id}")
        async def process_order(order_id: str) -> bool:
            await prepare(order_id)
            approval = await wf.signal("manager-approval")
            if approval["approved"]:
                await ship(order_id)
            return bool(approval["approved"])

        await wf.complete("order-42", "manager-approval", {"approved": True}, create=True)
        assert await process_order(order_id="42") is True
        assert await wf.complete("order-42", "manager-approval", {"approved": False}) is False
        assert calls.log == ["prepare", "ship"]

    async def test_complete_before_the_run_exists_is_kept_for_it(self, wf: Workflow) -> None:
        # A webhook may beat the workflow's start (python-durable 0.2 allowed it too).
        assert await wf.complete("ghost", "approve", True) is True
        assert await wf.complete("ghost", "approve", False) is False

        @wf.workflow(id="ghost")
        async def ghost() -> Any:
            return await wf.signal("approve")

        assert await ghost() is True

    async def test_signal_keys_cannot_mix_up_runs(self, wf: Workflow) -> None:
        await wf.complete("a:b", "c", 1, create=True)
        await wf.complete("a", "b:c", 2, create=True)
        store = await wf.get_store()
        assert [s.payload for s in await store.list_signals("a:b", "c")] == ["1"]
        assert [s.payload for s in await store.list_signals("a", "b:c")] == ["2"]
        assert await store.list_signals("a", "c") == []

    async def test_waiting_twice_on_a_name_receives_two_deliveries_in_order(self, wf: Workflow) -> None:
        @wf.workflow(id="twice")
        async def twice() -> list[int]:
            return [await wf.signal("n"), await wf.signal("n")]

        task = asyncio.ensure_future(twice())
        await until_status(wf, "twice", RunStatus.WAITING)
        await wf.complete("twice", "n", 1, delivery_id="first")
        await wf.complete("twice", "n", 2, delivery_id="second")
        assert await task == [1, 2]

    async def test_signal_timeout_raises_and_replays_as_timeout(self, wf: Workflow) -> None:
        @wf.workflow(id="impatient")
        async def impatient() -> str:
            try:
                await wf.signal("never", timeout=86400)
            except SignalTimeout:
                return "timed out"
            return "got it"

        async with virtual_time() as clock:  # a day's timeout, passed in virtual time
            assert await impatient() == "timed out"
            assert [round(jump) for jump in clock.jumps] == [86400]
        await wf.complete("impatient", "never", "too late")
        assert await impatient() == "timed out"  # replayed from the journal, at once

    async def test_complete_works_from_a_process_that_never_ran_a_workflow(self, store_url: str) -> None:
        if store_url.startswith("memory"):
            pytest.skip("the memory store is private to one Workflow object")
        runner = Workflow("app", db=store_url)

        @runner.workflow(id="remote")
        async def remote() -> Any:
            return await runner.signal("go")

        task = asyncio.ensure_future(remote())
        await until_status(runner, "remote", RunStatus.WAITING)
        web_handler = Workflow("app", db=store_url)  # a fresh object that never opened the store
        assert await web_handler.complete("remote", "go", {"ok": 1}) is True
        assert await asyncio.wait_for(task, 5) == {"ok": 1}
        await web_handler.close()
        await runner.close()


def test_arguments_by_position_or_by_keyword_bind_alike() -> None:
    wf = Workflow("bind", db="memory://")

    @wf.workflow
    async def pair(a: int, b: str) -> str:
        return b * a

    by_position = pair._bind((1, "x"), {})  # the fast path: every parameter by position
    assert (
        by_position
        == pair._bind((1,), {"b": "x"})
        == pair._bind((), {"a": 1, "b": "x"})
        == {"a": 1, "b": "x"}
    )
    assert list(by_position) == ["a", "b"]
    assert pair.run_id_for(1, "x") == pair.run_id_for(a=1, b="x")
    with pytest.raises(TypeError, match="'pair'"):
        pair.run_id_for(1)
    with pytest.raises(TypeError, match="'pair'"):
        pair.run_id_for(1, "x", 3)
