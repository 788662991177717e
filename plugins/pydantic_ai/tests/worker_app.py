"""An application served by ``durable worker worker_app:wf --store URL`` in the worker tests.

Its agent has deps that hold a live object (rebuilt by ``deps_factory`` from the part
``record_deps`` keeps), a per-run output type (``Report``, declared in ``output_types``) and runs
under usage limits. Every model request, tool execution and deps rebuild is appended to the file
``$PAI_WORKER_LOG`` (a killed worker keeps no memory); ``$PAI_WORKER_HANG=item-N`` makes the
lookup of that item hang once it has signalled ``<log>.ready``, for the test to kill the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_ai import Agent, RunContext, models
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

from durable import Workflow
from durable_pydantic_ai import DurableAgent, TaskConfig

models.ALLOW_MODEL_REQUESTS = False

LOOKUPS = 3
"""Model requests 1..LOOKUPS each ask for one lookup; request LOOKUPS + 1 answers."""


class Report(BaseModel):
    customer: str
    items: list[str]


@dataclass
class Deps:
    customer: str
    connection: Any = field(default_factory=threading.Lock)
    """A live object (it cannot be pickled): deps are never stored."""


def log(run_id: str | None, kind: str, value: str) -> None:
    with Path(os.environ["PAI_WORKER_LOG"]).open("a") as fh:
        fh.write(json.dumps([run_id, kind, value, os.getpid()]) + "\n")


def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(m, ModelResponse) for m in messages)
    log(messages[-1].run_id, "model", str(done))
    usage = RequestUsage(input_tokens=10, output_tokens=5)
    if done < LOOKUPS:
        return ModelResponse(
            parts=[ToolCallPart("lookup", {"item": f"item-{done}"}, tool_call_id=f"call-{done}")], usage=usage
        )
    found = [
        str(part.content)
        for m in messages
        if isinstance(m, ModelRequest)
        for part in m.parts
        if isinstance(part, ToolReturnPart)
    ]
    if not info.output_tools:  # the run lost its output type: answer in text, which the test refuses
        return ModelResponse(parts=[TextPart(", ".join(found))], usage=usage)
    payload = {"customer": found[0].split(":")[0], "items": found}
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, payload)], usage=usage)


def deps_factory(run_id: str, recorded: Any) -> Deps:
    log(run_id, "deps", json.dumps(recorded))
    return Deps(customer=recorded["customer"])


def build(wf: Workflow) -> DurableAgent[Deps, str]:
    agent = Agent(FunctionModel(respond), name="support", deps_type=Deps)

    @agent.tool
    async def lookup(ctx: RunContext[Deps], item: str) -> str:
        log(ctx.run_id, "tool", item)
        if item == os.environ.get("PAI_WORKER_HANG"):
            Path(f"{os.environ['PAI_WORKER_LOG']}.ready").write_text(item)
            await asyncio.sleep(3600)
        return f"{ctx.deps.customer}:{item}"

    return DurableAgent(
        agent,
        wf,
        output_types=[Report],
        deps_factory=deps_factory,
        record_deps=lambda deps: {"customer": deps.customer},
        model_task_config=TaskConfig(retries=0),
        tool_task_config=TaskConfig(retries=0),
    )


def workflow(db: str = "memory://") -> Workflow:
    # A short lease: a killed worker's run is taken over two seconds after its last renewal.
    return Workflow("pai-worker", db=db, default_retries=0, lease_seconds=2.0)


wf = workflow()  # `durable worker --store URL` points it at the real store
support = build(wf)
