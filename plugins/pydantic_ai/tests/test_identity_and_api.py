"""Run identity, behaviour outside a workflow, the refused APIs, durable_tool and durable_pipeline."""

from __future__ import annotations

import pytest
from agent_app import Recorder, build
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from durable import RunConflictError, Workflow
from durable.errors import ConfigurationError
from durable.pydantic_ai import DurableAgent, TaskConfig, durable_pipeline, durable_tool
from durable_pydantic_ai import DurableCapability


async def test_fresh_run_id_outside_a_workflow(wf: Workflow) -> None:
    recorder = Recorder()
    durable = build(wf, recorder)
    first = await durable.run("look things up")
    second = await durable.run("look things up")
    # Same prompt, no run id: two executions, never one answer shared through a prompt hash.
    assert first.run_id != second.run_id
    assert first.run_id.startswith("assistant-")
    assert recorder.model_requests == 8


async def test_same_run_id_with_other_prompt_is_a_conflict(wf: Workflow, run_prefix: str) -> None:
    durable = build(wf, Recorder())
    await durable.run("look things up", run_id=f"{run_prefix}-c")
    with pytest.raises(RunConflictError):
        await durable.run("something else", run_id=f"{run_prefix}-c")


async def test_run_id_derived_inside_an_enclosing_workflow(wf: Workflow, run_prefix: str) -> None:
    recorder = Recorder()
    durable = build(wf, recorder)

    @wf.workflow(name="two_agents")
    async def two_agents(topic: str) -> list[str]:
        a = await durable.run(f"{topic} 1")
        b = await durable.run(f"{topic} 2")
        return [a.run_id, b.run_id]

    ids = await two_agents.run(f"{run_prefix}-parent", "x")
    assert ids[0] != ids[1] and all(i.startswith(f"{run_prefix}-parent/") for i in ids)
    again = await two_agents.run(f"{run_prefix}-parent", "x")
    assert again == ids and recorder.model_requests == 8


def test_agent_name_is_required(wf: Workflow) -> None:
    with pytest.raises(ConfigurationError, match="needs a name"):
        DurableAgent(Agent(TestModel()), wf)
    assert DurableAgent(Agent(TestModel()), wf, name="explicit").name == "explicit"


async def test_outside_a_workflow_the_capability_is_transparent(wf: Workflow, run_prefix: str) -> None:
    agent = Agent(TestModel(custom_output_text="plain"), name="plain", capabilities=[DurableCapability(wf)])
    # Server stores are shared by the whole session: compare before and after, not with nothing.
    before = await wf.list_runs(limit=100_000)
    result = await agent.run("hi")
    assert result.output == "plain"
    assert await wf.list_runs(limit=100_000) == before


async def test_capability_inside_a_user_workflow(wf: Workflow, run_prefix: str) -> None:
    agent = Agent(TestModel(custom_output_text="inside"), name="cap", capabilities=[DurableCapability(wf)])

    @wf.workflow(name="with_capability")
    async def flow() -> str:
        return (await agent.run("hi")).output

    assert await flow.run(f"{run_prefix}-cap") == "inside"
    keys = [s.key for s in await wf.get_steps(f"{run_prefix}-cap")]
    assert keys[0] == "cap__model.request"


async def test_iter_outside_a_durable_run_refuses_clearly(wf: Workflow) -> None:
    """run_stream is durable now (test_streaming); iter only inside an enclosing durable run."""
    durable = build(wf, Recorder())
    with pytest.raises(ConfigurationError, match="iter drives the agent's graph from the caller's code"):
        durable.iter("x")


async def test_tool_decorator_on_durable_agent(wf: Workflow, run_prefix: str) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) > 1:
            return ModelResponse(parts=[TextPart("ok")])
        return ModelResponse(parts=[ToolCallPart("shout", {"text": "hi"}, tool_call_id="t")])

    durable = DurableAgent(Agent(FunctionModel(respond), name="decorated"), wf)
    said: list[str] = []

    @durable.tool_plain
    async def shout(text: str) -> str:
        said.append(text)
        return text.upper()

    assert (await durable.run("go", run_id=f"{run_prefix}-t")).output == "ok"
    await durable.run("go", run_id=f"{run_prefix}-t")
    assert said == ["hi"]


async def test_durable_tool_and_pipeline(wf: Workflow, run_prefix: str) -> None:
    searches: list[str] = []
    fail_once = {"q-1": True}

    @durable_tool(wf, retries=2)
    async def search(query: str) -> str:
        searches.append(query)
        return f"results for {query}"

    @durable_pipeline(wf, id=run_prefix + "-research-{topic_id}")
    async def research(topic_id: str, topics: list[str]) -> list[str]:
        found = []
        for i, topic in enumerate(topics):
            found.append(await search(topic, step_id=f"q-{i}"))  # type: ignore[call-arg]
            if fail_once.pop(f"q-{i}", False):
                raise RuntimeError("crash after q-1")
        return found

    with pytest.raises(RuntimeError):
        await research("7", ["a", "b", "c"])
    assert await research("7", ["a", "b", "c"]) == ["results for a", "results for b", "results for c"]
    assert searches == ["a", "b", "c"], "q-0 and q-1 replayed from the store"
    # Outside a run it is a plain (retried) coroutine function.
    assert await search("solo") == "results for solo"


async def test_durable_tool_as_agent_tool_is_one_step(wf: Workflow, run_prefix: str) -> None:
    @durable_tool(wf, retries=0)
    async def fetch(url: str) -> str:
        return f"<{url}>"

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) > 1:
            return ModelResponse(parts=[TextPart("fetched")])
        return ModelResponse(parts=[ToolCallPart("fetch", {"url": "u"}, tool_call_id="f")])

    agent = Agent(FunctionModel(respond), name="fetcher", tools=[fetch])
    durable = DurableAgent(agent, wf, tool_task_config=TaskConfig(retries=3))
    assert (await durable.run("go", run_id=f"{run_prefix}-dt")).output == "fetched"
    keys = [s.key for s in await wf.get_steps(f"{run_prefix}-dt")]
    assert keys == ["fetcher__model.request", "fetch", "fetcher__model.request#1"]
