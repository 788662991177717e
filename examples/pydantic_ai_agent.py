"""A durable pydantic-ai agent surviving a real crash, offline (FunctionModel, no API key).

    python examples/pydantic_ai_agent.py

The script starts itself as a child process that is killed (SIGKILL) in the middle of the
agent's second tool call, then runs the agent again with the same run id: the two model
responses already received come back from the SQLite file, only the interrupted tool call runs
again, and the agent carries on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic_ai import Agent, models
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Workflow
from durable.pydantic_ai import DurableAgent, TaskConfig

models.ALLOW_MODEL_REQUESTS = False  # offline: no real provider can be reached
RUN_ID = "ticket-42"
CITIES = ["Paris", "Rome", "Oslo"]


def make_agent(wf: Workflow, log: Path, crash: bool) -> DurableAgent[None, str]:
    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(isinstance(m, ModelResponse) for m in messages)
        with log.open("a") as fh:
            fh.write(f"model request {done + 1}\n")
        if done < len(CITIES):
            city = CITIES[done]
            return ModelResponse(parts=[ToolCallPart("weather", {"city": city}, tool_call_id=f"w{done}")])
        return ModelResponse(parts=[TextPart("Sunny in Paris, Rome and Oslo.")])

    agent = Agent(FunctionModel(model), name="travel-assistant")

    @agent.tool_plain
    async def weather(city: str) -> str:
        with log.open("a") as fh:
            fh.write(f"tool weather({city})\n")
        if crash and city == "Rome":
            os.kill(os.getpid(), signal.SIGKILL)  # the process dies mid tool call
        return f"{city}: sunny"

    return DurableAgent(
        agent, wf, model_task_config=TaskConfig(retries=3), tool_task_config=TaskConfig(retries=1)
    )


async def run(db: str, log: Path, crash: bool) -> str:
    async with Workflow("travel", db=db) as wf:
        result = await make_agent(wf, log, crash).run("Weather in my three cities?", run_id=RUN_ID)
        return str(result.output)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        asyncio.run(run(sys.argv[2], Path(sys.argv[3]), crash=True))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db, log = f"sqlite:///{Path(tmp) / 'agent.db'}", Path(tmp) / "calls.log"
        child = subprocess.run([sys.executable, __file__, "--child", db, str(log)])
        print(f"first process killed (exit code {child.returncode}); it had made:")
        first = log.read_text().splitlines()
        print("  " + "\n  ".join(first))
        output = asyncio.run(run(db, log, crash=False))
        second = log.read_text().splitlines()[len(first) :]
        print("second process (same run id) made only:")
        print("  " + "\n  ".join(second))
        print(f"output: {output}")
        requests = sum(line.startswith("model") for line in first + second)
        print(f"model requests in total: {requests} (one per response: none paid twice)")
        assert requests == len(CITIES) + 1


if __name__ == "__main__":
    main()
