"""Usage a tool adds to ``ctx.usage`` (an agent it delegates to, ``usage=ctx.usage``) is recorded
with the tool's checkpoint and added again when the step replays (issue 22, defect 4), so usage
limits and billing count it after a crash as without one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage, UsageLimits

from durable import Workflow
from durable_pydantic_ai import DurableAgent, TaskConfig

Reopen = Callable[[], Awaitable[Workflow]]
NO_RETRY = TaskConfig(retries=0)


class Crash(Exception):
    pass


@dataclass
class Delegation:
    """A parent agent whose first response asks ``delegates`` questions, each answered by a
    sub-agent sharing the parent's usage; its second response is the answer. 5 tokens per parent
    request, 100 per sub-agent request."""

    delegates: int = 1
    crash_in_second_request: bool = False
    parent_requests: int = 0
    sub_requests: list[str] = field(default_factory=list)

    def parent(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.parent_requests += 1
        usage = RequestUsage(input_tokens=3, output_tokens=2)
        if len(messages) == 1:
            calls = [
                ToolCallPart("delegate", {"question": f"q{i}"}, tool_call_id=f"d{i}")
                for i in range(self.delegates)
            ]
            return ModelResponse(parts=calls, usage=usage)
        if self.crash_in_second_request:
            raise Crash("crash in the parent's second request")
        return ModelResponse(parts=[TextPart("done")], usage=usage)

    async def sub(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await asyncio.sleep(0.02)  # parallel delegates overlap
        self.sub_requests.append(str(messages[-1].parts[0].content))  # type: ignore[union-attr]
        return ModelResponse(
            parts=[TextPart("answer")], usage=RequestUsage(input_tokens=60, output_tokens=40)
        )

    def durable(self, wf: Workflow) -> DurableAgent[None, str]:
        helper = Agent(FunctionModel(self.sub), name="helper")
        agent = Agent(FunctionModel(self.parent), name="delegating")

        @agent.tool
        async def delegate(ctx: RunContext[None], question: str) -> str:
            return (await helper.run(question, usage=ctx.usage)).output

        return DurableAgent(agent, wf, model_task_config=NO_RETRY, tool_task_config=NO_RETRY)


@pytest.mark.parametrize("delegates", [1, 3])
async def test_usage_added_by_a_tool_survives_a_replay(
    wf: Workflow, reopen: Reopen, run_prefix: str, delegates: int
) -> None:
    baseline = await Delegation(delegates).durable(await reopen()).run("ask", run_id=f"{run_prefix}-whole")
    assert baseline.usage.requests == 2 + delegates
    assert baseline.usage.total_tokens == 10 + 100 * delegates

    run_id = f"{run_prefix}-crash"
    first = Delegation(delegates, crash_in_second_request=True)
    with pytest.raises(Crash):
        await first.durable(wf).run("ask", run_id=run_id)
    second = Delegation(delegates)
    result = await second.durable(await reopen()).run("ask", run_id=run_id)

    assert (second.parent_requests, second.sub_requests) == (1, []), "the delegations replay from the store"
    assert result.usage.requests == 2 + delegates
    assert result.usage.total_tokens == 10 + 100 * delegates
    assert result.usage == baseline.usage


async def test_each_parallel_call_records_only_its_own_usage(wf: Workflow, run_prefix: str) -> None:
    await Delegation(3).durable(wf).run("ask", run_id=f"{run_prefix}-p")
    steps = [s for s in await wf.get_steps(f"{run_prefix}-p") if ".call_tool@delegate" in s.key]
    assert len(steps) == 3
    for step in steps:
        assert step.result is not None
        usage = json.loads(step.result)["durable_pydantic_ai:usage"]
        assert (usage["requests"], usage["input_tokens"], usage["output_tokens"]) == (1, 60, 40), step.key


async def test_a_usage_limit_counts_replayed_delegations(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    # 5 + 100 tokens before the parent's second request, 110 after it: over the limit, crash or not.
    limits = UsageLimits(total_tokens_limit=108)
    with pytest.raises(UsageLimitExceeded, match="total_tokens_limit of 108"):
        await (
            Delegation().durable(await reopen()).run("ask", run_id=f"{run_prefix}-whole", usage_limits=limits)
        )

    run_id = f"{run_prefix}-crash"
    with pytest.raises(Crash):
        await (
            Delegation(crash_in_second_request=True)
            .durable(wf)
            .run("ask", run_id=run_id, usage_limits=limits)
        )
    second = Delegation()
    with pytest.raises(UsageLimitExceeded, match="total_tokens_limit of 108"):
        await second.durable(await reopen()).run("ask", run_id=run_id, usage_limits=limits)
    assert (second.parent_requests, second.sub_requests) == (1, [])


async def test_a_tool_that_adds_no_usage_stores_its_bare_result(wf: Workflow, run_prefix: str) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("echo", {"text": "hi"}, tool_call_id="e")])
        return ModelResponse(parts=[TextPart("ok")])

    agent = Agent(FunctionModel(respond), name="echoing")

    @agent.tool_plain
    async def echo(text: str) -> str:
        return text

    await DurableAgent(agent, wf).run("go", run_id=f"{run_prefix}-e")
    [step] = [s for s in await wf.get_steps(f"{run_prefix}-e") if ".call_tool@echo" in s.key]
    assert step.result is not None and "durable_pydantic_ai:usage" not in step.result
