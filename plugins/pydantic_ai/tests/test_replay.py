"""A finished run called again: zero model and tool calls, identical output, messages and usage."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from agent_app import ROUNDS, Recorder, build
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable_pydantic_ai import DurableAgent


async def test_replay_of_finished_run_calls_nothing(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str
) -> None:
    first = Recorder()
    agent = build(wf, first)
    result = await agent.run("look things up", run_id=f"{run_prefix}-r")
    second = Recorder()
    replayed = await build(await reopen(), second).run("look things up", run_id=f"{run_prefix}-r")

    assert (second.model_requests, second.tool_calls) == (0, [])
    assert replayed.output == result.output == f"looked up {ROUNDS} items"
    assert replayed.all_messages() == result.all_messages()
    assert replayed.new_messages() == result.new_messages()
    assert replayed.usage == result.usage
    assert replayed.usage.requests == ROUNDS + 1 and replayed.usage.tool_calls == ROUNDS
    assert replayed.run_id == result.run_id == f"{run_prefix}-r"


async def test_messages_round_trip_as_real_objects(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str
) -> None:
    result = await build(wf, Recorder()).run("look things up", run_id=f"{run_prefix}-m")
    replayed = await build(await reopen(), Recorder()).run("look things up", run_id=f"{run_prefix}-m")
    calls = [p for m in replayed.all_messages() if isinstance(m, ModelResponse) for p in m.parts]
    assert [type(p) for p in calls[:ROUNDS]] == [ToolCallPart] * ROUNDS
    assert isinstance(calls[0], ToolCallPart) and calls[0].args == {"item": "item-0"}
    assert replayed.all_messages_json() == result.all_messages_json()


class City(BaseModel):
    name: str
    population: int


@dataclass
class Country:
    name: str
    cities: list[City]


def _structured_model(payload: dict[str, object]) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        tool = info.output_tools[0]
        return ModelResponse(parts=[ToolCallPart(tool.name, payload, tool_call_id="out")])

    return FunctionModel(respond)


@pytest.mark.parametrize(
    ("output_type", "payload", "expected"),
    [
        (City, {"name": "Paris", "population": 2}, City(name="Paris", population=2)),
        (
            Country,
            {"name": "FR", "cities": [{"name": "Lyon", "population": 1}]},
            Country("FR", [City(name="Lyon", population=1)]),
        ),
        (
            list[City],
            {"response": [{"name": "A", "population": 1}, {"name": "B", "population": 2}]},
            [City(name="A", population=1), City(name="B", population=2)],
        ),
    ],
)
async def test_structured_output_types_survive_replay(
    wf: Workflow, run_prefix: str, output_type: object, payload: dict[str, object], expected: object
) -> None:
    agent = Agent(_structured_model(payload), name="structured", output_type=output_type)  # type: ignore[call-overload]
    durable = DurableAgent(agent, wf)
    run_id = f"{run_prefix}-s"
    result = await durable.run("go", run_id=run_id)
    replayed = await durable.run("go", run_id=run_id)
    assert result.output == expected
    assert replayed.output == expected
    assert type(replayed.output) is type(expected)


async def test_output_type_given_per_run(wf: Workflow, run_prefix: str) -> None:
    agent = Agent(_structured_model({"name": "Rome", "population": 3}), name="per-run")
    durable = DurableAgent(agent, wf)
    result = await durable.run("go", run_id=f"{run_prefix}-o", output_type=City)
    replayed = await durable.run("go", run_id=f"{run_prefix}-o", output_type=City)
    assert result.output == replayed.output == City(name="Rome", population=3)
