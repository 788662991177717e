"""Renaming an agent, a toolset or a tool with runs in flight (issue 19): ``aliases={"old": "new"}``
finishes a run recorded under the old name without executing again what it had finished; without
the alias the run is refused naming the step, instead of calling its tools twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from durable import Workflow
from durable.errors import ConfigurationError, NondeterminismError
from durable_pydantic_ai import DurableAgent, TaskConfig


class Crash(Exception):
    pass


def build(
    wf: Workflow,
    log: list[str],
    *,
    agent: str = "helper",
    toolset: str = "ops",
    tool: str = "lookup",
    aliases: dict[str, str] | None = None,
    crash_at: int | None = None,
    added_tools: tuple[str, ...] = (),
) -> DurableAgent[None, str]:
    """Three model requests asking for one tool call each (by the tool's current name), then an answer."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        log.append("model")
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done < 3:
            return ModelResponse(parts=[ToolCallPart(tool, {"item": f"i{done}"}, tool_call_id=f"c{done}")])
        return ModelResponse(parts=[TextPart("done")])

    tools = FunctionToolset(id=toolset)

    @tools.tool_plain(name=tool)
    async def lookup(item: str) -> str:
        log.append(f"tool {item}")
        if crash_at is not None and sum(entry.startswith("tool") for entry in log) == crash_at:
            raise Crash(item)
        return f"{item}: ok"

    for added in added_tools:

        @tools.tool_plain(name=added)
        async def audit(item: str) -> str:
            log.append(f"audit {item}")
            return "audited"

    config = TaskConfig(retries=0)
    return DurableAgent(
        Agent(FunctionModel(model), name=agent, toolsets=[tools]),
        wf,
        aliases=aliases,
        added_tools=added_tools,
        model_task_config=config,
        tool_task_config=config,
    )


RENAMES = {
    "tool": ({"tool": "find"}, {"lookup": "find"}),
    "toolset": ({"toolset": "operations"}, {"ops": "operations"}),
    "agent": ({"agent": "assistant"}, {"helper": "assistant"}),
    "all three": (
        {"agent": "assistant", "toolset": "operations", "tool": "find"},
        {"helper": "assistant", "ops": "operations", "lookup": "find"},
    ),
}


@pytest.mark.parametrize("renamed", list(RENAMES))
async def test_a_run_recorded_under_the_old_name_finishes_under_the_new_one(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, renamed: str
) -> None:
    run_id = f"{run_prefix}-rename"
    first: list[str] = []
    with pytest.raises(Crash):
        await build(wf, first, crash_at=2).run("look things up", run_id=run_id)
    assert first == ["model", "tool i0", "model", "tool i1"]

    names, aliases = RENAMES[renamed]
    second: list[str] = []
    result = await build(await reopen(), second, aliases=aliases, **names).resume(run_id)
    assert result.output == "done"
    # Requests 1 and 2 and the first call replayed; the crashed call and what follows ran.
    assert second == ["tool i1", "model", "tool i2", "model"]

    keys = [step.key for step in await wf.get_steps(run_id)]
    old_call, new_call = (
        "ops.call_tool@lookup",
        f"{names.get('toolset', 'ops')}.call_tool@{names.get('tool', 'lookup')}",
    )
    assert f"helper__function_toolset__{old_call}(c0)" in keys  # recorded under the old name, kept
    assert (
        f"{names.get('agent', 'helper')}__function_toolset__{new_call}(c2)" in keys
    )  # a new call: the new name

    # The run's messages name the tool as it is now called (recorded responses are rewritten).
    calls = [p.tool_name for m in result.all_messages() for p in m.parts if isinstance(p, ToolCallPart)]
    assert calls == [names.get("tool", "lookup")] * 3


@pytest.mark.parametrize("renamed", ["tool", "toolset"])
async def test_without_the_alias_the_run_is_refused_naming_the_step(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, renamed: str
) -> None:
    run_id = f"{run_prefix}-stranded"
    first: list[str] = []
    with pytest.raises(Crash):
        await build(wf, first, crash_at=2).run("look things up", run_id=run_id)

    names, _ = RENAMES[renamed]
    second: list[str] = []
    with pytest.raises(NondeterminismError) as caught:
        await build(await reopen(), second, **names).run("look things up", run_id=run_id)
    # A renamed tool changes the tool list of the first model request; a renamed toolset, the name
    # of the first tool call: neither calls a tool again.
    expected = (
        "helper__model.request" if renamed == "tool" else "helper__function_toolset__ops.call_tool@lookup(c0)"
    )
    assert caught.value.key == expected
    assert "tool" not in " ".join(second)


async def test_a_tool_added_since_the_run_was_recorded_is_declared_with_added_tools(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str
) -> None:
    run_id = f"{run_prefix}-added"
    with pytest.raises(Crash):
        await build(wf, [], crash_at=2).run("look things up", run_id=run_id)
    second: list[str] = []
    result = await build(await reopen(), second, added_tools=("audit",)).run("look things up", run_id=run_id)
    assert result.output == "done"
    assert second == ["tool i1", "model", "tool i2", "model"]


def test_aliases_are_checked() -> None:
    wf = Workflow("aliases", db="memory://")
    agent = Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("x")])), name="checked")
    bad: list[dict[str, Any]] = [{"same": "same"}, {"a": ""}, {"a": "b", "b": "c"}]
    for aliases in bad:
        with pytest.raises(ConfigurationError, match="aliases"):
            DurableAgent(agent, wf, aliases=aliases)
