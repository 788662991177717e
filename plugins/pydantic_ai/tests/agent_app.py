"""A scripted agent used by the tests in-process and in subprocesses (``python agent_app.py``).

The model asks for ``ROUNDS`` tool calls, one per request, then answers; every model request and
tool execution is counted (in memory, and in a log file when one is given, since a killed
process keeps no memory).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic_ai import Agent, models
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from durable import Workflow
from durable.backoff import constant
from durable_pydantic_ai import DurableAgent, TaskConfig

models.ALLOW_MODEL_REQUESTS = False

ROUNDS = 3
"""Model requests 1..ROUNDS each ask for one tool call; request ROUNDS + 1 answers."""


class Crash(Exception):
    """An in-process crash in the middle of a tool call."""


@dataclass
class Recorder:
    log: Path | None = None
    model_requests: int = 0
    tool_calls: list[str] = field(default_factory=list)
    crash_in_tool_call: int | None = None
    """Crash in the n-th tool execution (1-based) of this process."""
    hang_in_tool_call: int | None = None
    """Signal readiness (file ``<log>.ready``) and hang in the n-th tool execution, to be killed."""

    def write(self, kind: str, value: str) -> None:
        if self.log is not None:
            with self.log.open("a") as fh:
                fh.write(json.dumps([kind, value]) + "\n")

    def model(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.model_requests += 1
        self.write("model", str(self.model_requests))
        done = sum(isinstance(m, ModelResponse) for m in messages)
        usage = RequestUsage(input_tokens=10 + done, output_tokens=5)
        if done < ROUNDS:
            call = ToolCallPart("lookup", {"item": f"item-{done}"}, tool_call_id=f"call-{done}")
            return ModelResponse(parts=[call], usage=usage)
        return ModelResponse(parts=[TextPart(f"looked up {done} items")], usage=usage)

    async def tool(self, item: str) -> str:
        self.tool_calls.append(item)
        self.write("tool", item)
        n = len(self.tool_calls)
        if n == self.crash_in_tool_call:
            raise Crash(f"crash in tool call {n}")
        if n == self.hang_in_tool_call:
            assert self.log is not None
            Path(f"{self.log}.ready").write_text(item)
            await asyncio.sleep(3600)
        return f"{item}: ok"


def build(wf: Workflow, recorder: Recorder, name: str = "assistant") -> DurableAgent[None, str]:
    agent = Agent(FunctionModel(recorder.model), name=name)

    @agent.tool_plain
    async def lookup(item: str) -> str:
        return await recorder.tool(item)

    return DurableAgent(
        agent,
        wf,
        model_task_config=TaskConfig(retries=2, backoff=constant(0)),
        tool_task_config=TaskConfig(retries=0),
    )


def read_log(log: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            kind, value = json.loads(line)
            counts[kind] += 1
            if kind == "tool":
                counts[f"tool:{value}"] += 1
    return counts


async def _main(url: str, run_id: str, log: str, hang: int | None) -> None:
    recorder = Recorder(log=Path(log), hang_in_tool_call=hang)
    async with Workflow("pai-tests", db=url, default_retries=0, lease_seconds=2.0) as wf:
        result = await build(wf, recorder).run("look things up", run_id=run_id)
        Path(f"{log}.result").write_text(json.dumps({"output": result.output, "pid": os.getpid()}))


if __name__ == "__main__":
    url_arg, run_id_arg, log_arg, hang_arg = sys.argv[1:5]
    asyncio.run(_main(url_arg, run_id_arg, log_arg, int(hang_arg) or None))
