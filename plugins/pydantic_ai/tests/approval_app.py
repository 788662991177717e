"""An agent whose refund tool needs a manager's approval (used in-process and as a subprocess)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests

from durable import Workflow
from durable_pydantic_ai import DurableAgent, ResumeToken


def build(wf: Workflow, log: Path) -> DurableAgent[None, str]:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        with log.open("a") as fh:
            fh.write("model\n")
        returns = [p for m in messages for p in getattr(m, "parts", []) if isinstance(p, ToolReturnPart)]
        if returns:
            return ModelResponse(parts=[TextPart(f"refund: {returns[-1].content}")])
        return ModelResponse(parts=[ToolCallPart("refund", {"amount": 30}, tool_call_id="refund-1")])

    agent = Agent(FunctionModel(respond), name="support")

    @agent.tool_plain(requires_approval=True)
    async def refund(amount: int) -> str:
        with log.open("a") as fh:
            fh.write("refund\n")
        return f"{amount} EUR refunded"

    async def notify(ctx: RunContext[None], requests: DeferredToolRequests, token: ResumeToken) -> None:
        # A real app would post to Slack; the test reads this file.
        with log.open("a") as fh:
            fh.write("ask\n")
        Path(f"{log}.pending").write_text(
            json.dumps({"token": str(token), "calls": [c.tool_call_id for c in requests.approvals]})
        )
        return None

    return DurableAgent(agent, wf, on_approval_request=notify)


async def _main(url: str, run_id: str, log: str) -> None:
    async with Workflow("pai-approvals", db=url) as wf:
        result = await build(wf, Path(log)).run("refund my order", run_id=run_id)
        Path(f"{log}.result").write_text(result.output)


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:4]))
