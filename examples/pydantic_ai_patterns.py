"""The five pydantic-ai patterns of the README, offline (FunctionModel / TestModel, no API key).

    python examples/pydantic_ai_patterns.py

1. DurableAgent: a run id makes the agent run resumable; a finished run replays for free.
2. Retries per step: TaskConfig for model and tool steps; a 503 is retried inside its step.
3. @durable_tool: a tool function that is a checkpointed, retried task.
4. @durable_pipeline: several agents in one durable workflow, each agent run a child run.
5. Human in the loop: a tool that needs approval waits for wf.complete(...).
"""

from __future__ import annotations

import asyncio

from pydantic_ai import Agent, models
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from durable import RunStatus, Workflow
from durable.backoff import constant, exponential
from durable.pydantic_ai import DurableAgent, TaskConfig, durable_pipeline, durable_tool

models.ALLOW_MODEL_REQUESTS = False
model_calls = 0


def counted(text: str) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        global model_calls
        model_calls += 1
        return ModelResponse(parts=[TextPart(text)])

    return FunctionModel(respond)


async def pattern_1_durable_agent(wf: Workflow) -> None:
    agent = Agent(counted("Paris"), instructions="Be helpful.", name="assistant")
    durable_agent = DurableAgent(agent, wf)
    result = await durable_agent.run("What is the capital of France?", run_id="same-id")
    before = model_calls
    again = await durable_agent.run("What is the capital of France?", run_id="same-id")
    print(f"1. {result.output} / replayed: {again.output}, model calls on replay: {model_calls - before}")


async def pattern_2_retries(wf: Workflow) -> None:
    attempts = 0

    def flaky(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ModelHTTPError(503, "demo-model", "overloaded")
        return ModelResponse(parts=[TextPart("answered after a retry")])

    durable_agent = DurableAgent(
        Agent(FunctionModel(flaky), name="retrying"),
        wf,
        model_task_config=TaskConfig(retries=5, backoff=exponential(base=0.01, max=0.1)),
        tool_task_config=TaskConfig(retries=3),
    )
    result = await durable_agent.run("hello", run_id="retry-demo")
    steps = await wf.get_steps("retry-demo")
    print(f"2. {result.output}: {attempts} attempts, {len(steps)} checkpoint ({steps[0].attempts} attempts)")


async def pattern_3_durable_tool(wf: Workflow) -> None:
    fetched: list[str] = []

    @durable_tool(wf, retries=3, backoff=exponential(base=0.01, max=0.1))
    async def web_search(query: str) -> str:
        fetched.append(query)  # a real tool would call an HTTP API here
        return f"3 results for {query!r}"

    agent = Agent(TestModel(), name="searcher", tools=[web_search])
    durable_agent = DurableAgent(agent, wf)
    await durable_agent.run("search something", run_id="search-demo")
    await durable_agent.run("search something", run_id="search-demo")
    print(f"3. web_search ran {len(fetched)} time(s) over two runs of the same run id")


async def pattern_4_pipeline(wf: Workflow) -> None:
    planner = DurableAgent(Agent(counted("durability; replay"), name="planner"), wf)
    writer = DurableAgent(Agent(counted("A short report."), name="writer"), wf)
    searched: list[str] = []

    @durable_tool(wf, retries=2, backoff=constant(0))
    async def search(query: str) -> str:
        searched.append(query)
        return f"notes on {query}"

    @durable_pipeline(wf, id="research-{topic_id}")
    async def research(topic_id: str, topic: str) -> str:
        plan = await planner.run(f"Plan research on {topic}")
        findings = []
        for i, query in enumerate(plan.output.split("; ")):
            findings.append(await search(query, step_id=f"q-{i}"))  # type: ignore[call-arg]
        summary = await writer.run("Summarise: " + " | ".join(findings))
        return str(summary.output)

    report = await research("42", "durable agents")
    again = await research("42", "durable agents")  # finished: returned from the store
    print(f"4. {report} (again: {again!r}; searches made: {len(searched)})")


async def pattern_5_approval(wf: Workflow) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)]
        if returns:
            return ModelResponse(parts=[TextPart(f"Done: {returns[-1].content}")])
        return ModelResponse(parts=[ToolCallPart("refund", {"amount": 30}, tool_call_id="refund-1")])

    agent = Agent(FunctionModel(respond), name="support")

    @agent.tool_plain(requires_approval=True)
    async def refund(amount: int) -> str:
        return f"refunded {amount} EUR"

    durable_agent = DurableAgent(agent, wf)
    run = asyncio.ensure_future(durable_agent.run("Refund order 7", run_id="refund-7"))
    # Polling the store stands in for the manager's UI, which would list waiting runs.
    while (record := await wf.get_run("refund-7")) is None or record.status is not RunStatus.WAITING:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    print("5. the run waits for a manager; approving through wf.complete(...)")
    await wf.complete("refund-7", "approval", {"approvals": {"refund-1": True}})
    print(f"   {(await run).output}")


async def main() -> None:
    async with Workflow("patterns", db="memory://", default_backoff=constant(0)) as wf:
        await pattern_1_durable_agent(wf)
        await pattern_2_retries(wf)
        await pattern_3_durable_tool(wf)
        await pattern_4_pipeline(wf)
        await pattern_5_approval(wf)


if __name__ == "__main__":
    asyncio.run(main())
