"""DurableAgent is a pydantic-ai ``WrapperAgent`` (issue 22): the agent interface works or is refused
saying what to use instead; one agent per name on a Workflow (defect 2); ``override(model=alias)``
(defect 3); external toolsets per run; mistakes refused at construction; ``run_sync`` in a running
loop; a step's timeout named."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from fastmcp.client.transports import PythonStdioTransport
from pydantic_ai import Agent
from pydantic_ai.agent import AbstractAgent, WrapperAgent
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.run import AgentRunResultEvent
from pydantic_ai.tools import DeferredToolRequests, ToolDefinition
from pydantic_ai.toolsets import ExternalToolset, FunctionToolset

from durable import RunStatus, StepTimeout, Workflow
from durable.errors import ConfigurationError
from durable_pydantic_ai import DurableAgent, TaskConfig

Reopen = Callable[[], Awaitable[Workflow]]
SERVER = Path(__file__).with_name("mcp_server.py")


def _options(run_inputs: str) -> dict[str, object]:
    options: dict[str, object] = json.loads(run_inputs)["options"] or {}
    return options


# -- one agent per name (defect 2) ------------------------------------------------------------


async def test_a_second_agent_under_one_name_is_refused(wf: Workflow, run_prefix: str) -> None:
    refunds = Agent(TestModel(custom_output_text="refunded"), name="billing")
    DurableAgent(refunds, wf)
    other = Agent(TestModel(custom_output_text="declined"), name="billing")
    with pytest.raises(ConfigurationError) as info:
        DurableAgent(other, wf)
    message = str(info.value)
    assert "already has a DurableAgent named 'billing'" in message
    assert f"{id(refunds):#x}" in message and f"{id(other):#x}" in message, "both agents are named"
    # The same agent again (a module built twice) is accepted and serves the runs.
    again = DurableAgent(refunds, wf)
    assert (await again.run("refund", run_id=f"{run_prefix}-b")).output == "refunded"
    # Another Workflow (another application) may use the name.
    async with Workflow("elsewhere", db="memory://") as elsewhere:
        assert (await DurableAgent(other, elsewhere).run("x", run_id="e")).output == "declined"


# -- override (defect 3) -----------------------------------------------------------------------


async def test_override_resolves_a_model_alias_and_records_it(wf: Workflow, run_prefix: str) -> None:
    agent = Agent(TestModel(custom_output_text="main"), name="overridden")
    durable = DurableAgent(agent, wf, models={"alt": TestModel(custom_output_text="alt")})
    with durable.override(model="alt"):
        result = await durable.run("hi", run_id=f"{run_prefix}-o")
    assert result.output == "alt"
    run = await wf.get_run(f"{run_prefix}-o")
    assert run is not None and _options(run.inputs) == {"model": "alt"}
    assert (await durable.run("hi", run_id=f"{run_prefix}-plain")).output == "main"


async def test_other_overrides_are_needed_to_resume(wf: Workflow, run_prefix: str) -> None:
    durable = DurableAgent(Agent(TestModel(custom_output_text="x"), name="ov2"), wf)
    with durable.override(instructions="Be brief."):
        await durable.run("hi", run_id=f"{run_prefix}-i")
    run = await wf.get_run(f"{run_prefix}-i")
    assert run is not None and _options(run.inputs) == {"needs": ["override(instructions=...)"]}


# -- the WrapperAgent interface -----------------------------------------------------------------


async def test_durable_agent_is_a_wrapper_agent(wf: Workflow) -> None:
    tools = FunctionToolset(id="extra")
    agent = Agent(TestModel(), name="wrapped", toolsets=[tools], output_type=int)
    durable = DurableAgent(agent, wf)
    assert isinstance(durable, WrapperAgent) and isinstance(durable, AbstractAgent)
    assert durable.wrapped is agent
    assert durable.model is agent.model and durable.name == "wrapped"
    assert list(durable.toolsets) == list(agent.toolsets)
    assert durable.output_type is int and durable.deps_type is agent.deps_type
    with pytest.raises(ConfigurationError, match="cannot change"):
        durable.name = "renamed"
    async with durable as entered:
        assert entered is durable


def _tool_then_answer(calls: list[int]) -> FunctionModel:
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        calls.append(1)
        if len(messages) == 1:
            yield {0: DeltaToolCall(name="ping", json_args="{}", tool_call_id="p")}
        else:
            yield "pong received"

    return FunctionModel(stream_function=stream)


async def test_run_stream_events_is_a_durable_run(wf: Workflow, run_prefix: str) -> None:
    calls: list[int] = []
    agent = Agent(_tool_then_answer(calls), name="events")

    @agent.tool_plain
    async def ping() -> str:
        return "pong"

    durable = DurableAgent(agent, wf)
    run_id = f"{run_prefix}-ev"
    async with durable.run_stream_events("go", run_id=run_id) as stream:
        events = [event async for event in stream]
    assert isinstance(events[-1], AgentRunResultEvent) and events[-1].result.output == "pong received"
    kinds = {type(event).__name__ for event in events}
    assert {"FunctionToolCallEvent", "FunctionToolResultEvent"} <= kinds
    assert calls == [1, 1]
    run = await wf.get_run(run_id)
    assert run is not None and run.status is RunStatus.COMPLETED

    # The finished run again: its result, no model call, no event delivered twice.
    async with durable.run_stream_events("go", run_id=run_id) as stream:
        replayed = [event async for event in stream]
    assert len(replayed) == 1 and isinstance(replayed[0], AgentRunResultEvent)
    assert replayed[0].result.output == "pong received" and calls == [1, 1]


async def test_what_cannot_be_durable_is_refused_saying_what_to_use(wf: Workflow) -> None:
    durable = DurableAgent(Agent(TestModel(), name="refusals"), wf)
    # run_stream is durable (test_streaming); iter only inside an enclosing durable run.
    with pytest.raises(
        ConfigurationError, match=r"iter drives the agent's graph.*inside a @wf.workflow body"
    ):
        durable.iter("x")
    with pytest.raises(ConfigurationError, match=r"realtime is not durable.*durable_agent.wrapped.realtime"):
        durable.realtime("openai-realtime:gpt-realtime")
    with pytest.raises(
        ConfigurationError, match=r"conversation=.*message_history=, usage= and conversation_id="
    ):
        await durable.run("x", conversation=object())
    with pytest.raises(ConfigurationError, match=r"wf.cancel\(run_id\)"):
        await durable.run("x", cancellation_token=object())
    with pytest.raises(ConfigurationError, match="takes only ExternalToolsets"):
        await durable.run("x", toolsets=[FunctionToolset(id="late")])


# -- external toolsets per run ------------------------------------------------------------------

WEATHER = ToolDefinition(
    name="get_weather",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
    description="Answered by the caller's front end",
)


def _external_caller(calls: list[int]) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        returns = [p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)]
        if returns:
            return ModelResponse(parts=[TextPart(f"weather: {returns[0].content}")])
        assert [t.name for t in info.function_tools] == ["get_weather"]
        return ModelResponse(parts=[ToolCallPart("get_weather", {"city": "Oslo"}, tool_call_id="w1")])

    return FunctionModel(respond)


async def test_an_external_toolset_per_run_ends_with_deferred_requests(wf: Workflow, run_prefix: str) -> None:
    calls: list[int] = []
    agent = Agent(_external_caller(calls), name="external", output_type=[str, DeferredToolRequests])
    durable = DurableAgent(agent, wf, handle_deferred=False)
    toolset = ExternalToolset([WEATHER], id="frontend")
    result = await durable.run("weather?", run_id=f"{run_prefix}-x", toolsets=[toolset])
    assert isinstance(result.output, DeferredToolRequests)
    assert [c.tool_call_id for c in result.output.calls] == ["w1"]
    run = await wf.get_run(f"{run_prefix}-x")
    assert run is not None
    recorded = _options(run.inputs)["toolsets"]
    assert recorded == [
        {"id": "frontend", "tool_defs": [json.loads(json.dumps(recorded[0]["tool_defs"][0]))]}
    ]  # type: ignore[index]


async def test_an_external_tool_answered_later_is_resumed_from_the_store(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    calls: list[int] = []
    run_id = f"{run_prefix}-later"
    task = asyncio.ensure_future(
        DurableAgent(Agent(_external_caller(calls), name="ext"), wf).run(
            "weather?", run_id=run_id, toolsets=[ExternalToolset([WEATHER], id="frontend")]
        )
    )
    for _ in range(500):
        run = await wf.get_run(run_id)
        if run is not None and run.status is RunStatus.WAITING:
            break
        await asyncio.sleep(0.01)
    task.cancel()  # the caller goes away while the run waits for the tool's answer
    with pytest.raises(asyncio.CancelledError):
        await task

    resumer = DurableAgent(Agent(_external_caller(calls), name="ext"), await reopen())
    assert await resumer.approve(run_id, calls={"w1": "sunny"})
    result = await resumer.resume(run_id)  # no toolsets= here: they were recorded
    assert result.output == "weather: sunny"
    assert calls == [1, 1]


# -- refused at construction --------------------------------------------------------------------


def test_mistakes_are_refused_at_construction(wf: Workflow) -> None:
    with pytest.raises(ConfigurationError, match=r"DurableAgent 'no-model': .*needs to have a `model`"):
        DurableAgent(Agent(name="no-model"), wf)
    with pytest.raises(ConfigurationError, match="Model ID 'default' is reserved"):
        DurableAgent(Agent(TestModel(), name="reserved"), wf, models={"default": TestModel()})
    with pytest.raises(ConfigurationError, match=r"unique `id`.*FunctionToolset\(id=\.\.\.\)"):
        DurableAgent(Agent(TestModel(), name="no-id", toolsets=[FunctionToolset()]), wf)
    mcp: MCPToolset[None] = MCPToolset(PythonStdioTransport(SERVER, args=["/dev/null"]))
    with pytest.raises(ConfigurationError, match="unique `id`"):
        DurableAgent(Agent(TestModel(), name="mcp-no-id", toolsets=[mcp]), wf)


# -- run_sync -----------------------------------------------------------------------------------


async def test_run_sync_in_a_running_event_loop_says_what_to_do(wf: Workflow) -> None:
    durable = DurableAgent(Agent(TestModel(), name="sync-in-loop"), wf)
    with pytest.raises(
        ConfigurationError, match=r"inside a running event loop.*await durable_agent.run\(\.\.\.\)"
    ):
        durable.run_sync("hi")


def test_run_sync_outside_an_event_loop(tmp_path: Path) -> None:
    wf = Workflow("sync", db=f"sqlite:///{tmp_path / 'sync.db'}")
    durable = DurableAgent(Agent(TestModel(custom_output_text="done"), name="sync"), wf)
    assert durable.run_sync("hi", run_id="s1").output == "done"
    assert durable.run_sync("hi", run_id="s1").output == "done"


# -- a step's timeout ---------------------------------------------------------------------------


async def test_a_step_timeout_names_the_step_and_the_limit(wf: Workflow, run_prefix: str) -> None:
    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            await asyncio.sleep(5)
        return ModelResponse(parts=[TextPart("late")])

    durable = DurableAgent(
        Agent(FunctionModel(slow), name="slow"), wf, model_task_config=TaskConfig(timeout=0.2)
    )
    with pytest.raises(StepTimeout) as info:
        await durable.run("hi", run_id=f"{run_prefix}-m")
    assert "'slow__model.request'" in str(info.value) and "0.2 seconds" in str(info.value)
    assert info.value.step_key == "slow__model.request"

    def call_tool(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("stall", {}, tool_call_id="s")])

    agent = Agent(FunctionModel(call_tool), name="stalling")

    @agent.tool_plain(metadata={"durable": TaskConfig(timeout=0.1, retries=0)})
    async def stall() -> str:
        await asyncio.sleep(5)
        return "never"

    with pytest.raises(StepTimeout) as tool_info:
        await DurableAgent(agent, wf).run("go", run_id=f"{run_prefix}-t")
    assert "call_tool@stall(s)" in str(tool_info.value) and "0.1 seconds" in str(tool_info.value)
