"""A scripted agent with deps, for the tests of what a run records and what a resumed run gets.

Model requests 1 and 2 each ask for one ``lookup`` call; request 3 answers, with a ``Report`` when
the run asks for one (an output tool is offered) and with text otherwise. Everything the model and
the tool see is kept, so a test can tell which arguments a resumed run was given.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

LOOKUPS = 2
"""Requests 1..LOOKUPS ask for a lookup; request LOOKUPS + 1 answers."""


class Report(BaseModel):
    items: list[str]
    total: int


class Crash(Exception):
    """A crash in the middle of a tool call."""


@dataclass
class Deps:
    prefix: str
    client: Any = field(default_factory=threading.Lock)
    """A live object: deps are never stored, so they may hold one (a lock cannot be pickled)."""


@dataclass
class Script:
    label: str = "main"
    requests: list[int] = field(default_factory=list)
    """The index of each model request made (0 for the first), in this process."""
    settings: list[Any] = field(default_factory=list)
    instructions: list[str | None] = field(default_factory=list)
    tool_calls: list[str] = field(default_factory=list)
    metadata: list[Any] = field(default_factory=list)
    crash_in_item: str | None = None

    def model(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(isinstance(m, ModelResponse) for m in messages)
        self.requests.append(done)
        self.settings.append(info.model_settings)
        self.instructions.append(info.instructions)
        usage = RequestUsage(input_tokens=3, output_tokens=2)
        if done < LOOKUPS:
            call = ToolCallPart("lookup", {"item": f"item-{done}"}, tool_call_id=f"call-{done}")
            return ModelResponse(parts=[call], usage=usage)
        found = [
            str(part.content)
            for m in messages
            if isinstance(m, ModelRequest)
            for part in m.parts
            if isinstance(part, ToolReturnPart)
        ]
        if info.output_tools:
            payload = {"items": found, "total": len(found)}
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, payload)], usage=usage)
        return ModelResponse(parts=[TextPart(f"{self.label}: " + ", ".join(found))], usage=usage)

    def agent(self, name: str = "scripted") -> Agent[Deps, str]:
        agent = Agent(FunctionModel(self.model), name=name, deps_type=Deps)

        @agent.tool
        async def lookup(ctx: RunContext[Deps], item: str) -> str:
            self.tool_calls.append(item)
            self.metadata.append(ctx.metadata)
            if item == self.crash_in_item:
                raise Crash(f"crash in the lookup of {item}")
            return f"{ctx.deps.prefix if ctx.deps is not None else 'nobody'}:{item}"

        return agent
