"""A streaming agent for the tests, in-process and in a subprocess (``python stream_app.py``).

Model requests 1 and 2 each stream one tool call; request 3 streams the answer token by token.
Every model request and tool execution is counted in memory and, when given, in a log file (a
killed process keeps no memory).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, models
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

from durable import Workflow
from durable_pydantic_ai import DurableAgent, TaskConfig

models.ALLOW_MODEL_REQUESTS = False

TOOL_ROUNDS = 2
ANSWER = ["The ", "answer ", "is ", "42."]


class Crash(Exception):
    """An in-process crash in the middle of the third model request's stream."""


@dataclass
class StreamRecorder:
    log: Path | None = None
    model_requests: int = 0
    tool_calls: list[str] = field(default_factory=list)
    crash_at_token: int | None = None
    """In the answer: raise ``Crash`` instead of yielding token ``n`` (0-based)."""
    hang_at_token: int | None = None
    """In the answer: write ``<log>.ready`` and hang instead of yielding token ``n``, to be killed."""
    gate: asyncio.Event | None = None
    """In the answer: wait for it after the first token."""

    def write(self, kind: str, value: str) -> None:
        if self.log is not None:
            with self.log.open("a") as fh:
                fh.write(json.dumps([kind, value]) + "\n")

    async def stream(
        self, messages: list[ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        from pydantic_ai.models.function import DeltaToolCall

        self.model_requests += 1
        self.write("model", str(self.model_requests))
        done = sum(isinstance(m, ModelResponse) for m in messages)
        if done < TOOL_ROUNDS:
            args = json.dumps({"item": f"item-{done}"})
            yield {0: DeltaToolCall(name="lookup", json_args=args, tool_call_id=f"call-{done}")}
            return
        for i, token in enumerate(ANSWER):
            if i == self.crash_at_token:
                self.crash_at_token = None  # once: a retry (or the next process) streams it all
                raise Crash(f"crash before token {i}")
            if i == self.hang_at_token:
                assert self.log is not None
                Path(f"{self.log}.ready").write_text(str(i))
                await asyncio.sleep(3600)
            yield token
            if i == 0 and self.gate is not None:
                await self.gate.wait()

    async def tool(self, item: str) -> str:
        self.tool_calls.append(item)
        self.write("tool", item)
        return f"{item}: ok"


def build(wf: Workflow, recorder: StreamRecorder, **options: Any) -> DurableAgent[None, str]:
    agent = Agent(FunctionModel(stream_function=recorder.stream), name="streamer")

    @agent.tool_plain
    async def lookup(item: str) -> str:
        return await recorder.tool(item)

    options.setdefault("model_task_config", TaskConfig(retries=0))
    options.setdefault("tool_task_config", TaskConfig(retries=0))
    return DurableAgent(agent, wf, **options)


def signature(item: dict[str, Any]) -> tuple[Any, ...]:
    """What a stream item says, without its timestamps (they differ between two runs)."""
    part = item.get("part") or {}
    delta = item.get("delta") or {}
    return (
        item["event_kind"],
        item.get("index"),
        part.get("part_kind"),
        part.get("content"),
        part.get("tool_name"),
        part.get("tool_call_id"),
        part.get("args"),
        delta.get("content_delta"),
        item.get("output"),
    )


def read_log(log: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            kind, _ = json.loads(line)
            counts[kind] += 1
    return counts


async def _main(url: str, run_id: str, log: str, hang: int | None) -> None:
    recorder = StreamRecorder(log=Path(log), hang_at_token=hang)
    async with Workflow("pai-tests", db=url, default_retries=0, lease_seconds=2.0) as wf:
        async with build(wf, recorder).run_stream("what is the answer?", run_id=run_id) as result:
            async for text in result.stream_text(delta=True):
                recorder.write("text", text)
            output = await result.get_output()
        Path(f"{log}.result").write_text(json.dumps({"output": output}))


if __name__ == "__main__":
    url_arg, run_id_arg, log_arg, hang_arg = sys.argv[1:5]
    asyncio.run(_main(url_arg, run_id_arg, log_arg, int(hang_arg) if hang_arg != "-" else None))
