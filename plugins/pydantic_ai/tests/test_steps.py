"""Step keys: parallel tool calls, the pinned persisted names, event-stream dispatches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from agent_app import Recorder, build
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    FunctionToolResultEvent,
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel
from pydantic_ai.toolsets import FunctionToolset

from durable import Workflow
from durable_pydantic_ai import DurableAgent, TaskConfig

CITIES = ["paris", "rome", "oslo"]


def _parallel_agent(delays: dict[str, float], executed: list[str], name: str = "weather") -> Agent[None, str]:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(isinstance(m, ModelResponse) for m in messages):
            return ModelResponse(parts=[TextPart("all sunny")])
        # Tool call ids chosen by the model: the same tool three times in one response.
        return ModelResponse(
            parts=[ToolCallPart("forecast", {"city": c}, tool_call_id=f"call_{c}") for c in CITIES]
        )

    agent = Agent(FunctionModel(respond), name=name)

    @agent.tool_plain
    async def forecast(city: str) -> str:
        await asyncio.sleep(delays.get(city, 0))
        executed.append(city)
        return f"{city}: sunny"

    return agent


async def test_parallel_tool_calls_have_deterministic_keys(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str
) -> None:
    executed: list[str] = []
    # Finishing in reverse order must not change which result belongs to which call.
    agent = _parallel_agent({"paris": 0.03, "rome": 0.02, "oslo": 0.0}, executed)
    durable = DurableAgent(agent, wf)
    result = await durable.run("weather?", run_id=f"{run_prefix}-p")
    assert sorted(executed) == sorted(CITIES)
    keys = {s.key for s in await wf.get_steps(f"{run_prefix}-p")}
    assert {f"weather__function_toolset__<agent>.call_tool@forecast(call_{c})" for c in CITIES} <= keys

    executed.clear()
    replay_agent = _parallel_agent({"paris": 0.0, "rome": 0.02, "oslo": 0.03}, executed)
    replayed = await DurableAgent(replay_agent, await reopen()).run("weather?", run_id=f"{run_prefix}-p")
    assert executed == []
    assert replayed.all_messages() == result.all_messages()


async def test_interrupted_parallel_calls_rerun_only_unfinished(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str
) -> None:
    executed: list[str] = []
    agent = _parallel_agent({"paris": 0.0, "rome": 0.0, "oslo": 3600}, executed)
    task = asyncio.ensure_future(DurableAgent(agent, wf).run("weather?", run_id=f"{run_prefix}-i"))
    while len(executed) < 2:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let the two finished calls reach their checkpoints
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    executed.clear()
    resumed = _parallel_agent({}, executed)
    result = await DurableAgent(resumed, await reopen()).run("weather?", run_id=f"{run_prefix}-i")
    assert executed == ["oslo"]
    assert result.output == "all sunny"


# The persisted step names are compatibility data: a run recorded by one version must replay on the
# next. Changing this list means stranding in-flight runs; do it only with a migration.
PINNED_STEP_NAMES = [
    ("assistant__model.request", "assistant__model.request"),
    (
        "assistant__function_toolset__<agent>.call_tool@lookup(call-0)",
        "assistant__function_toolset__<agent>.call_tool@lookup(call-0)",
    ),
    ("assistant__model.request#1", "assistant__model.request"),
    (
        "assistant__function_toolset__<agent>.call_tool@lookup(call-1)",
        "assistant__function_toolset__<agent>.call_tool@lookup(call-1)",
    ),
    ("assistant__model.request#2", "assistant__model.request"),
    (
        "assistant__function_toolset__<agent>.call_tool@lookup(call-2)",
        "assistant__function_toolset__<agent>.call_tool@lookup(call-2)",
    ),
    ("assistant__model.request#3", "assistant__model.request"),
]


async def test_snapshot_of_persisted_step_names(wf: Workflow, run_prefix: str) -> None:
    await build(wf, Recorder()).run("look things up", run_id=f"{run_prefix}-snap")
    steps = await wf.get_steps(f"{run_prefix}-snap")
    assert [(s.key, s.task) for s in steps] == PINNED_STEP_NAMES
    run = await wf.get_run(f"{run_prefix}-snap")
    assert run is not None and run.workflow == "pydantic_ai.assistant"


async def test_snapshot_of_streaming_toolset_and_event_step_names(wf: Workflow, run_prefix: str) -> None:
    events: list[str] = []

    async def stream(messages: list[ModelMessage], info: AgentInfo):  # type: ignore[no-untyped-def]
        if any(isinstance(m, ModelResponse) for m in messages):
            yield "done"
        else:
            yield {0: DeltaToolCall(name="ping", json_args="{}", tool_call_id="p1")}

    toolset = FunctionToolset(id="ops")

    @toolset.tool_plain
    async def ping() -> str:
        return "pong"

    async def handler(ctx: RunContext[None], stream_events: object) -> None:
        async for event in stream_events:  # type: ignore[attr-defined]
            events.append(type(event).__name__)

    agent = Agent(FunctionModel(stream_function=stream), name="ops-agent", toolsets=[toolset])
    durable = DurableAgent(agent, wf, event_stream_handler=handler)
    await durable.run("go", run_id=f"{run_prefix}-ev")
    keys = [s.key for s in await wf.get_steps(f"{run_prefix}-ev")]
    assert keys[0] == "ops-agent__model.request_stream"
    assert "ops-agent__function_toolset__ops.call_tool@ping(p1)" in keys
    assert "ops-agent__model.request_stream#1" in keys
    assert any(k.startswith("ops-agent__event_stream_handler") for k in keys)


async def test_event_stream_events_not_delivered_twice_on_resume(wf: Workflow, run_prefix: str) -> None:
    delivered: list[str] = []
    crash = {"on": True}

    async def stream(messages: list[ModelMessage], info: AgentInfo):  # type: ignore[no-untyped-def]
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done < 2:
            yield {0: DeltaToolCall(name="step", json_args=f'{{"n": {done}}}', tool_call_id=f"s{done}")}
        else:
            yield "finished"

    agent = Agent(FunctionModel(stream_function=stream), name="streamer")

    @agent.tool_plain
    async def step(n: int) -> str:
        if n == 1 and crash["on"]:
            raise RuntimeError("crash in the second tool call")
        return f"step {n}"

    async def handler(ctx: RunContext[None], stream_events: object) -> None:
        async for event in stream_events:  # type: ignore[attr-defined]
            if isinstance(event, FunctionToolResultEvent):
                delivered.append(f"result:{event.tool_call_id}")
            elif type(event).__name__ == "PartStartEvent":
                delivered.append("part-start")

    durable = DurableAgent(agent, wf, event_stream_handler=handler, tool_task_config=TaskConfig(retries=0))
    with pytest.raises(RuntimeError):
        await durable.run("go", run_id=f"{run_prefix}-es")
    first = list(delivered)
    crash["on"] = False
    delivered.clear()
    result = await durable.run("go", run_id=f"{run_prefix}-es")
    assert result.output == "finished"
    # The first request's part and the first tool's result were delivered before the crash: not again.
    assert first.count("result:s0") == 1 and "result:s0" not in delivered
    assert delivered.count("result:s1") == 1
    assert (first + delivered).count("part-start") == 3, (first, delivered)
