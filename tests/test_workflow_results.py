"""A workflow's return value is checked against its return annotation, as a task's is (issue 16,
items 3 and 6): a value the annotation refuses is never stored, and a stored result of the wrong
type is never returned unchecked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from durable import RunStatus, SerializationError, Workflow


async def test_a_return_value_its_annotation_refuses_fails_the_run_naming_it(tmp_path: Path) -> None:
    wf = Workflow("results", db=f"sqlite:///{tmp_path / 'r.db'}")

    @wf.workflow(id="count-{n}")
    async def count(n: int) -> int:
        return "not an int"  # type: ignore[return-value]

    with pytest.raises(SerializationError) as raised:
        await count(1)
    assert raised.value.run_id == "count-1"
    assert "'count'" in str(raised.value) and "count-1" in str(raised.value)
    run = await wf.get_run("count-1")
    assert run is not None and run.status is RunStatus.FAILED and run.result is None
    await wf.close()


async def test_a_child_result_its_annotation_refuses_is_not_recorded(tmp_path: Path) -> None:
    wf = Workflow("results", db=f"sqlite:///{tmp_path / 'r.db'}")

    @wf.workflow()
    async def child() -> int:
        return "nope"  # type: ignore[return-value]

    @wf.workflow(id="parent")
    async def parent() -> int:
        return await child()

    with pytest.raises(SerializationError):
        await parent()
    steps = await wf.get_steps("parent")
    assert [step.status.value for step in steps] == ["failed"]  # no completed child step to replay
    await wf.close()


async def test_a_stored_result_of_the_wrong_type_is_refused_naming_the_run(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    wf = Workflow("results", db=f"sqlite:///{path}")

    @wf.workflow(id="count-{n}")
    async def count(n: int) -> int:
        return n

    assert await count(2) == 2
    await wf.close()
    with sqlite3.connect(path) as conn:  # hand-edited, or written by code of another annotation
        conn.execute("UPDATE runs SET result = '\"not an int\"' WHERE run_id = 'count-2'")
    wf = Workflow("results", db=f"sqlite:///{path}")

    @wf.workflow(id="count-{n}", name="count")
    async def count_again(n: int) -> int:
        return n

    with pytest.raises(SerializationError) as raised:
        await count_again(2)
    assert raised.value.run_id == "count-2" and "count-2" in str(raised.value)
    await wf.close()


@pytest.mark.parametrize("name", ["a\x00b", "a\ud800"])
async def test_a_step_name_no_store_can_hold_is_refused_before_its_body_runs(
    tmp_path: Path, name: str
) -> None:
    from durable import ConfigurationError, current_run

    wf = Workflow("results", db=f"sqlite:///{tmp_path / 'r.db'}")
    ran: list[str] = []

    async def body() -> int:
        ran.append(name)
        return 1

    @wf.workflow(id="named")
    async def named() -> int:
        ctx = current_run()
        assert ctx is not None
        return await ctx.step(name, body)

    with pytest.raises(ConfigurationError) as raised:
        await named()
    assert "step name" in str(raised.value) and "named" in str(raised.value)
    assert ran == []
    await wf.close()


def test_a_task_or_workflow_name_longer_than_200_characters_is_refused() -> None:
    from durable import ConfigurationError

    wf = Workflow("results", db="memory://")

    async def body() -> None: ...

    with pytest.raises(ConfigurationError, match="longer than 200 characters"):
        wf.workflow(name="w" * 201)(body)
    with pytest.raises(ConfigurationError, match="longer than 200 characters"):
        wf.task(name="t" * 201)(body)
    assert wf.task(name="t" * 200)(body).name == "t" * 200
