"""What the capability reads of pydantic-ai's private layout is still there, and still used.

A ``@durable_tool`` checkpoints itself as a task, so the capability must not wrap its calls in a
tool step of its own. It recognises one by reading a function tool's layout
(``ToolsetTool.call_func.__self__.function``, pydantic-ai's private ``FunctionSchema``). If a
pydantic-ai release moved that, the check would silently answer "not a durable tool" and every
such call would be checkpointed twice; this test spies on the check and fails then."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import durable_pydantic_ai._capability as capability
from durable import Workflow
from durable.pydantic_ai import DurableAgent, durable_tool


async def test_a_durable_tool_is_recognised_through_the_function_tool_layout(
    wf: Workflow, run_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, bool] = {}
    check = capability._is_durable_task_tool

    def spy(tool: Any) -> bool:
        answer = check(tool)
        seen[tool.tool_def.name] = answer
        return answer

    monkeypatch.setattr(capability, "_is_durable_task_tool", spy)

    @durable_tool(wf, retries=0)
    async def fetch(url: str) -> str:
        return f"<{url}>"

    async def plain(word: str) -> str:
        return word.upper()

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) > 1:
            return ModelResponse(parts=[TextPart("done")])
        calls = [ToolCallPart("fetch", {"url": "u"}, tool_call_id="f"), ToolCallPart("plain", {"word": "w"})]
        return ModelResponse(parts=calls)

    agent = Agent(FunctionModel(respond), name="layout", tools=[fetch, plain])
    result = await DurableAgent(agent, wf).run("go", run_id=f"{run_prefix}-layout")

    assert result.output == "done"
    assert seen == {"fetch": True, "plain": False}
    keys = [s.key for s in await wf.get_steps(f"{run_prefix}-layout")]
    # fetch: its own task step, and no tool step around it; plain: the capability's tool step.
    tool_steps = [key.split(".call_tool@")[1].split("(")[0] for key in keys if ".call_tool@" in key]
    assert tool_steps == ["plain"], keys
    assert keys.count("fetch") == 1 and len(keys) == 4, keys
