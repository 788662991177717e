"""durable replay over durable pydantic-ai agent runs (issue 19): their model requests and tool calls
are ordinary steps, so a replay returns the recorded responses and results, executes no model
request and no tool, and a renamed tool shows up as an incompatible run naming a step."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("durable_pydantic_ai")

from pydantic_ai import Agent, models
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable_pydantic_ai import DurableAgent, TaskConfig

models.ALLOW_MODEL_REQUESTS = False


class Crash(Exception):
    pass


def build(
    url: str,
    log: list[str],
    *,
    tool: str = "lookup",
    crash_at: int | None = None,
    aliases: dict[str, str] | None = None,
    extra_tool: bool = False,
    added_tools: tuple[str, ...] = (),
) -> tuple[Workflow, DurableAgent[None, str]]:
    """An agent asking for three tool calls, one per model request, then answering."""
    wf = Workflow("agents", db=url, default_retries=0)

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        log.append("model")
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done < 3:
            return ModelResponse(
                parts=[ToolCallPart("lookup", {"item": f"i{done}"}, tool_call_id=f"c{done}")]
            )
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(model), name="assistant")

    @agent.tool_plain(name=tool)
    async def lookup(item: str) -> str:
        log.append(f"tool {item}")
        if crash_at is not None and sum(e.startswith("tool") for e in log) == crash_at:
            raise Crash(item)
        return f"{item}: ok"

    if extra_tool:

        @agent.tool_plain
        async def audit(item: str) -> str:
            log.append(f"audit {item}")
            return "audited"

    config = TaskConfig(retries=0)
    return wf, DurableAgent(
        agent, wf, model_task_config=config, tool_task_config=config, aliases=aliases, added_tools=added_tools
    )


async def test_an_agent_run_replays_without_a_model_request_or_a_tool_call(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    recorded: list[str] = []
    wf, agent = build(url, recorded, crash_at=2)
    async with wf:
        with pytest.raises(Crash):
            await agent.run("look things up", run_id="ticket-1")
    assert recorded == ["model", "tool i0", "model", "tool i1"]

    executed: list[str] = []
    same, _ = build(url, executed)
    (result,) = (await same.check_replay(store=url)).results
    assert (result.compatible, result.outcome) == (True, "stopped"), result
    assert result.step_key is not None and "call_tool@lookup(c1)" in result.step_key  # the crashed call
    assert executed == []

    renamed, _ = build(url, executed, tool="find")
    (result,) = (await renamed.check_replay(store=url)).results
    assert not result.compatible, result
    assert result.step_key is not None and "model.request" in result.step_key
    assert executed == []


async def test_a_changed_tool_list_is_incompatible_at_the_first_model_request(tmp_path: Path) -> None:
    """The tool names are part of a model request's digest: a tool added (or renamed) since the run
    was recorded is reported at the model request that first saw the old list, before any tool."""
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    recorded: list[str] = []
    wf, agent = build(url, recorded, crash_at=2)
    async with wf:
        with pytest.raises(Crash):
            await agent.run("look things up", run_id="ticket-2")

    executed: list[str] = []
    added, _ = build(url, executed, extra_tool=True)
    (result,) = (await added.check_replay(store=url)).results
    assert not result.compatible, result
    assert result.step_key == "assistant__model.request", result
    assert executed == []

    # Declared as added since the run was recorded, the new tool leaves the run compatible.
    declared, _ = build(url, executed, extra_tool=True, added_tools=("audit",))
    (result,) = (await declared.check_replay(store=url)).results
    assert (result.compatible, result.outcome) == (True, "stopped"), result
    assert executed == []


async def test_a_renamed_tool_with_its_alias_replays_compatibly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    recorded: list[str] = []
    wf, agent = build(url, recorded, crash_at=2)
    async with wf:
        with pytest.raises(Crash):
            await agent.run("look things up", run_id="ticket-3")

    executed: list[str] = []
    renamed, _ = build(url, executed, tool="find", aliases={"lookup": "find"})
    (result,) = (await renamed.check_replay(store=url)).results
    assert (result.compatible, result.outcome) == (True, "stopped"), result
    # It stops at the crashed call, recorded under the old name, as the unrenamed code does.
    assert result.step_key is not None and "call_tool@lookup(c1)" in result.step_key
    assert executed == []


def build_streaming(url: str, log: list[str], *, crash: bool) -> tuple[Workflow, DurableAgent[None, str]]:
    """A streaming agent: two requests stream a tool call each, the third streams its answer."""
    from pydantic_ai.models.function import DeltaToolCall

    wf = Workflow("agents", db=url, default_retries=0)

    async def stream(messages: list[ModelMessage], info: AgentInfo):  # type: ignore[no-untyped-def]
        log.append("model")
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done < 2:
            yield {
                0: DeltaToolCall(name="lookup", json_args=f'{{"item": "i{done}"}}', tool_call_id=f"c{done}")
            }
            return
        yield "all "
        if crash:
            raise Crash("mid-stream")
        yield "done"

    agent = Agent(FunctionModel(stream_function=stream), name="streamer")

    @agent.tool_plain
    async def lookup(item: str) -> str:
        log.append(f"tool {item}")
        return f"{item}: ok"

    config = TaskConfig(retries=0)
    return wf, DurableAgent(agent, wf, model_task_config=config, tool_task_config=config)


async def test_a_streamed_agent_run_replays_without_a_model_request_or_a_stream_write(tmp_path: Path) -> None:
    """run_stream's runs replay like any other: the recorded streamed responses come back, no model
    request is made, and the replay appends nothing to the run's "events" stream."""
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    recorded: list[str] = []
    wf, agent = build_streaming(url, recorded, crash=True)
    async with wf:
        with pytest.raises(Crash):
            async with agent.run_stream("look things up", run_id="chat-1") as result:
                await result.get_output()
        before = (await (await wf.get_store()).read_stream("chat-1", "events", 0)).items
    assert recorded == ["model", "tool i0", "model", "tool i1", "model"]

    executed: list[str] = []
    same, _ = build_streaming(url, executed, crash=False)
    (result,) = (await same.check_replay(store=url)).results
    assert (result.compatible, result.outcome) == (True, "stopped"), result
    assert result.step_key is not None and "model.request_stream#2" in result.step_key  # the crashed request
    assert executed == []
    async with same:
        after = (await (await same.get_store()).read_stream("chat-1", "events", 0)).items
    assert after == before and len(before) > 4
