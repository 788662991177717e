"""An agent run that any worker can finish, offline (FunctionModel, no API key).

    python examples/pydantic_ai_worker.py

The script records a run (``durable_agent.start``) with deps that hold a live object, a per-run
output type and usage limits, then starts ``durable worker pydantic_ai_worker:wf`` and kills it
(SIGKILL) in the middle of the run's second tool call. A second worker takes the run over: it
rebuilds the deps with ``deps_factory`` from what ``record_deps`` kept, replays the two model
responses already received, runs the interrupted tool call again and finishes with a ``Report``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent, RunContext, models
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits

from durable import Workflow
from durable.pydantic_ai import DurableAgent

models.ALLOW_MODEL_REQUESTS = False  # offline: no real provider can be reached
ORDERS = ["A-1", "B-2", "C-3"]


class Report(BaseModel):
    customer: str
    orders: list[str]


@dataclass
class Deps:
    customer: str
    client: Any = field(default_factory=threading.Lock)  # a live object: deps are never stored


def note(line: str) -> None:
    with Path(os.environ["EXAMPLE_LOG"]).open("a") as fh:
        fh.write(f"[pid {os.getpid()}] {line}\n")


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(m, ModelResponse) for m in messages)
    note(f"model request {done + 1}")
    if done < len(ORDERS):
        return ModelResponse(parts=[ToolCallPart("order", {"number": ORDERS[done]}, tool_call_id=f"o{done}")])
    found = [
        str(p.content)
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    ]
    payload = {"customer": found[0].split(":")[0], "orders": found}
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, payload)])


agent = Agent(FunctionModel(model), name="orders", deps_type=Deps)


@agent.tool
async def order(ctx: RunContext[Deps], number: str) -> str:
    note(f"tool order({number})")
    if number == os.environ.get("EXAMPLE_HANG"):
        note("(hangs here until the worker is killed)")
        await asyncio.sleep(3600)
    return f"{ctx.deps.customer}:{number}"


def rebuild_deps(run_id: str, kept: Any) -> Deps:
    note(f"deps_factory({run_id!r}, {kept})")
    return Deps(kept["customer"])  # a worker opens its own client


wf = Workflow("orders", db="memory://", lease_seconds=2.0)  # `durable worker --store URL` names the store
durable_agent = DurableAgent(
    agent,
    wf,
    output_types=[Report],
    record_deps=lambda d: {"customer": d.customer},
    deps_factory=rebuild_deps,
)


def worker(db: str, **env: str) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).with_name("durable")),
        "worker",
        "pydantic_ai_worker:wf",
        "--store",
        db,
    ]
    here = str(Path(__file__).parent)
    return subprocess.Popen(
        [*command, "--poll", "0.05", "-q"], cwd=here, env={**os.environ, "PYTHONPATH": here, **env}
    )


async def start(db: str) -> str:
    wf.use_store(db)
    async with wf:
        return await durable_agent.start(
            "Summarise my orders",
            run_id="orders-42",
            deps=Deps("acme"),
            output_type=Report,
            usage_limits=UsageLimits(request_limit=len(ORDERS) + 1),
        )


async def result(db: str, run_id: str) -> Any:
    async with Workflow("orders", db=db) as other:  # another process would build its own
        return await DurableAgent(agent, other, output_types=[Report]).wait_for(run_id, timeout=60)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db, log = f"sqlite:///{Path(tmp) / 'orders.db'}", Path(tmp) / "calls.log"
        os.environ["EXAMPLE_LOG"] = str(log)
        run_id = asyncio.run(start(db))
        first = worker(db, EXAMPLE_HANG=ORDERS[1])
        while "hangs here" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        print(f"first worker killed (exit code {first.wait()}) in the middle of run {run_id!r}; it had made:")
        before = log.read_text().splitlines()
        print("  " + "\n  ".join(before))
        second = worker(db)
        try:
            finished = asyncio.run(result(db, run_id))
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait()
        print("second worker made only:")
        print("  " + "\n  ".join(log.read_text().splitlines()[len(before) :]))
        print(f"output: {finished.output!r}")
        print(f"usage: {finished.usage.requests} requests, {finished.usage.tool_calls} tool calls")
        requests = sum("model request" in line for line in log.read_text().splitlines())
        print(f"model requests in total: {requests} (none made twice)")
        assert isinstance(finished.output, Report) and requests == len(ORDERS) + 1


if __name__ == "__main__":
    main()
