"""Bad input gets a clear error naming the task, run or key at fault, and the store stays intact."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from durable import RunStatus, Workflow
from durable.errors import ConfigurationError, RunConflictError, SerializationError

HOSTILE_IDS = [
    "quote'\"`",
    "percent%s%d%%",
    "colon:separated:id",
    "new\nline\ttab",
    "'; DROP TABLE runs; --",
    "unicode-é-漢字-🙂",
    "slash/and\\backslash",
    "x" * 1000,
]


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
async def test_hostile_run_ids_round_trip_exactly(wf: Workflow, run_id: str) -> None:
    @wf.task
    async def echo(value: str) -> str:
        return value

    @wf.workflow
    async def flow(value: str) -> str:
        return await echo(value, step_id=value)

    assert await flow.run(run_id, run_id) == run_id
    run = await wf.get_run(run_id)
    assert run is not None and run.run_id == run_id and run.status is RunStatus.COMPLETED
    assert await wf.complete(run_id, run_id, {"name": run_id}) is True
    [signal] = await wf.get_signals(run_id)
    assert (signal.run_id, signal.name) == (run_id, run_id)


async def test_several_megabyte_results_round_trip(wf: Workflow) -> None:
    blob = "0123456789abcdef" * (4 * 1024 * 1024 // 16)  # 4 MiB

    @wf.task
    async def big() -> dict[str, Any]:
        return {"blob": blob, "items": list(range(50_000))}

    @wf.workflow(id="big")
    async def flow() -> int:
        value = await big()
        return len(value["blob"]) + len(value["items"])

    assert await flow() == len(blob) + 50_000
    [step] = await wf.get_steps("big")
    assert step.result is not None and len(step.result) > 4 * 1024 * 1024


def test_run_ids_that_cannot_be_stored_are_rejected_naming_the_workflow() -> None:
    wf = Workflow("bad", db="memory://")

    @wf.workflow(id="{name}")
    async def flow(name: str) -> None: ...

    with pytest.raises(ConfigurationError, match=r"workflow 'flow'.*non-empty"):
        flow.run_id_for("")
    with pytest.raises(ConfigurationError, match="NUL"):
        flow.run_id_for("a\x00b")
    with pytest.raises(ConfigurationError, match="longer than 1024"):
        flow.run_id_for("y" * 2000)


@pytest.mark.parametrize("name", ["", "a#b", "a@b", "a/b", "a:b", "bad\nname"])
def test_task_names_that_would_break_step_keys_are_rejected(name: str) -> None:
    wf = Workflow("bad", db="memory://")
    with pytest.raises(ConfigurationError, match="task name"):

        @wf.task(name=name)
        async def t() -> None: ...


def test_a_sync_workflow_body_is_rejected_at_decoration_and_says_what_to_do() -> None:
    wf = Workflow("bad", db="memory://")
    with pytest.raises(ConfigurationError, match=r"plain.*async def.*plain 'def'.*plain\.run_sync"):

        @wf.workflow
        def plain() -> None: ...  # type: ignore[arg-type]

    @wf.task  # a task may be a plain def since issue 20 (it runs in a thread)
    def step() -> None: ...


async def test_unstorable_workflow_arguments_name_the_run(wf: Workflow) -> None:
    @wf.workflow(id="sock-{label}")
    async def flow(label: str, conn: object) -> None: ...

    with socket.socket() as sock, pytest.raises(SerializationError, match="sock-x"):
        await flow("x", sock)
    assert await wf.get_run("sock-x") is None  # nothing half-written


async def test_unstorable_signal_payload_names_the_run_and_signal(wf: Workflow) -> None:
    @wf.workflow(id="sig")
    async def flow() -> None: ...

    await flow()
    with socket.socket() as sock, pytest.raises(SerializationError, match=r"'sig'.*'go'"):
        await wf.complete("sig", "go", sock)
    assert await wf.get_signals("sig") == []


async def test_a_failed_step_leaves_earlier_checkpoints_intact(wf: Workflow) -> None:
    @wf.task(retries=0)
    async def ok() -> str:
        return "kept"

    @wf.task(retries=0)
    async def bad() -> object:
        return object()

    @wf.workflow(id="partial")
    async def flow() -> None:
        await ok()
        await bad()

    with pytest.raises(SerializationError, match=r"'bad'.*'partial'"):
        await flow()
    steps = {s.key: s for s in await wf.get_steps("partial")}
    assert steps["ok"].result == '"kept"'


async def test_changing_inputs_of_a_finished_run_is_a_conflict_not_an_overwrite(wf: Workflow) -> None:
    @wf.workflow(id="fixed")
    async def flow(x: int = 0) -> int:
        return x

    assert await flow(1) == 1
    with pytest.raises(RunConflictError, match="fixed"):
        await flow.run("fixed", 2)
    assert await flow(1) == 1
