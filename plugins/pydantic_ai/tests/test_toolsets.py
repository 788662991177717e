"""MCP and dynamic toolsets: each tool call is its own checkpointed step (issue 6), like function tools.

The MCP server is a real subprocess spoken to over stdio (``mcp_server.py``); it counts its tool
executions in a log file. The dynamic toolset is registered both ways pydantic-ai offers:
``@agent.toolset(id=...)`` on an existing agent and ``DynamicToolset(..., id=...)`` in the constructor.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastmcp.client.transports import PythonStdioTransport
from fastmcp.exceptions import ToolError
from pydantic_ai import Agent, RunContext, models
from pydantic_ai.exceptions import UserError
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.toolsets import AbstractToolset, DynamicToolset, FunctionToolset
from pydantic_ai.usage import RequestUsage

from durable import RunStatus, Workflow
from durable_pydantic_ai import DurableAgent, DurableCapability, TaskConfig

SERVER = Path(__file__).with_name("mcp_server.py")
ROUNDS = 2
"""Model requests 1..ROUNDS each ask for one ``lookup`` call; request ROUNDS + 1 answers."""
TOTAL_REQUESTS = ROUNDS + 1
OUTPUT = f"looked up {ROUNDS} items"

assert models.ALLOW_MODEL_REQUESTS is False  # set by conftest: offline only


class Crash(Exception):
    """An in-process crash."""


@dataclass
class Script:
    """The scripted model, and the in-process tool of the dynamic toolset; both count executions."""

    model_requests: int = 0
    tool_calls: list[str] = field(default_factory=list)
    crash_in_request: int | None = None
    crash_in_item: str | None = None

    def model(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.model_requests += 1
        if self.model_requests == self.crash_in_request:
            raise Crash(f"crash in model request {self.model_requests}")
        done = sum(isinstance(m, ModelResponse) for m in messages)
        usage = RequestUsage(input_tokens=10 + done, output_tokens=5)
        if done < ROUNDS:
            call = ToolCallPart("lookup", {"item": f"item-{done}"}, tool_call_id=f"call-{done}")
            return ModelResponse(parts=[call], usage=usage)
        return ModelResponse(parts=[TextPart(f"looked up {done} items")], usage=usage)

    def lookup_toolset(self) -> FunctionToolset[None]:
        toolset: FunctionToolset[None] = FunctionToolset(id="lookup-functions")

        @toolset.tool_plain
        async def lookup(item: str) -> str:
            self.tool_calls.append(item)
            if item == self.crash_in_item:
                raise Crash(f"crash in the tool call for {item}")
            return f"{item}: ok"

        return toolset


def _durable(agent: Agent[None, str], wf: Workflow) -> DurableAgent[None, str]:
    # No retries: a crash is a crash, and every execution is counted exactly.
    no_retry = TaskConfig(retries=0)
    return DurableAgent(
        agent, wf, model_task_config=no_retry, tool_task_config=no_retry, mcp_task_config=no_retry
    )


class McpHarness:
    """An agent whose ``lookup`` tool lives on an MCP server in a subprocess (stdio)."""

    agent_name = "mcp-agent"
    tool_crash: type[Exception] = ToolError

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "mcp.log"
        self.crash_file = Path(f"{self.log}.crash")

    def build(self, wf: Workflow, script: Script) -> DurableAgent[None, str]:
        transport = PythonStdioTransport(SERVER, args=[str(self.log)], keep_alive=False)
        # tool_error_behavior="error": a failing MCP tool crashes the run instead of asking the model again.
        toolset: MCPToolset[None] = MCPToolset(transport, id="lookups", tool_error_behavior="error")
        return _durable(Agent(FunctionModel(script.model), name=self.agent_name, toolsets=[toolset]), wf)

    def arm_tool_crash(self, script: Script, item: str | None) -> None:
        if item is None:
            self.crash_file.unlink(missing_ok=True)
        else:
            self.crash_file.write_text(item)

    def tool_calls(self, script: Script) -> list[str]:
        return [value for kind, value in self._entries() if kind == "tool"]

    def server_starts(self) -> int:
        return sum(kind == "start" for kind, _ in self._entries())

    def reset(self) -> None:
        self.log.unlink(missing_ok=True)

    def _entries(self) -> list[tuple[str, str]]:
        if not self.log.exists():
            return []
        return [(str(kind), str(value)) for kind, value in map(json.loads, self.log.read_text().splitlines())]


class DynamicHarness:
    """An agent whose ``lookup`` tool comes from a ``DynamicToolset`` (decorator or constructor)."""

    agent_name = "dynamic-agent"
    tool_crash: type[Exception] = Crash

    def __init__(self, style: str) -> None:
        self.style = style

    def build(self, wf: Workflow, script: Script) -> DurableAgent[None, str]:
        def lookups(ctx: RunContext[None]) -> AbstractToolset[None]:
            return script.lookup_toolset()

        agent: Agent[None, str]
        if self.style == "decorator":
            agent = Agent(FunctionModel(script.model), name=self.agent_name)
            agent.toolset(id="lookups")(lookups)
        else:
            dynamic: DynamicToolset[None] = DynamicToolset(lookups, id="lookups")
            agent = Agent(FunctionModel(script.model), name=self.agent_name, toolsets=[dynamic])
        return _durable(agent, wf)

    def arm_tool_crash(self, script: Script, item: str | None) -> None:
        script.crash_in_item = item

    def tool_calls(self, script: Script) -> list[str]:
        return script.tool_calls

    def reset(self) -> None:
        pass


Harness = McpHarness | DynamicHarness


@pytest.fixture(params=["mcp", "dynamic-decorator", "dynamic-constructor"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "mcp":
        return McpHarness(tmp_path)
    return DynamicHarness(request.param.removeprefix("dynamic-"))


# Compatibility data, like test_steps.PINNED_STEP_NAMES: a run recorded by one version must replay on
# the next, so these change only with a migration. (key, task) of every step, in order.
PINNED_MCP_STEP_NAMES = [
    ("mcp-agent__mcp_server__lookups.get_tools", "mcp-agent__mcp_server__lookups.get_tools"),
    ("mcp-agent__model.request", "mcp-agent__model.request"),
    (
        "mcp-agent__mcp_server__lookups.call_tool@lookup(call-0)",
        "mcp-agent__mcp_server__lookups.call_tool@lookup(call-0)",
    ),
    ("mcp-agent__model.request#1", "mcp-agent__model.request"),
    (
        "mcp-agent__mcp_server__lookups.call_tool@lookup(call-1)",
        "mcp-agent__mcp_server__lookups.call_tool@lookup(call-1)",
    ),
    ("mcp-agent__model.request#2", "mcp-agent__model.request"),
]

PINNED_DYNAMIC_STEP_NAMES = [
    (
        "dynamic-agent__dynamic_toolset__lookups.get_tools",
        "dynamic-agent__dynamic_toolset__lookups.get_tools",
    ),
    ("dynamic-agent__model.request", "dynamic-agent__model.request"),
    (
        "dynamic-agent__dynamic_toolset__lookups.call_tool@lookup(call-0)",
        "dynamic-agent__dynamic_toolset__lookups.call_tool@lookup(call-0)",
    ),
    (
        "dynamic-agent__dynamic_toolset__lookups.get_tools#1",
        "dynamic-agent__dynamic_toolset__lookups.get_tools",
    ),
    ("dynamic-agent__model.request#1", "dynamic-agent__model.request"),
    (
        "dynamic-agent__dynamic_toolset__lookups.call_tool@lookup(call-1)",
        "dynamic-agent__dynamic_toolset__lookups.call_tool@lookup(call-1)",
    ),
    (
        "dynamic-agent__dynamic_toolset__lookups.get_tools#2",
        "dynamic-agent__dynamic_toolset__lookups.get_tools",
    ),
    ("dynamic-agent__model.request#2", "dynamic-agent__model.request"),
]


def _pinned(harness: Harness) -> list[tuple[str, str]]:
    return PINNED_MCP_STEP_NAMES if isinstance(harness, McpHarness) else PINNED_DYNAMIC_STEP_NAMES


async def test_each_tool_call_is_a_step_with_a_pinned_name(
    wf: Workflow, run_prefix: str, harness: Harness
) -> None:
    script = Script()
    run_id = f"{run_prefix}-names"
    result = await harness.build(wf, script).run("look things up", run_id=run_id)
    assert result.output == OUTPUT
    assert (script.model_requests, harness.tool_calls(script)) == (TOTAL_REQUESTS, ["item-0", "item-1"])
    steps = await wf.get_steps(run_id)
    assert [(s.key, s.task) for s in steps] == _pinned(harness)


@pytest.mark.parametrize("where", ["model", "tool"])
async def test_crash_after_the_first_tool_call_reruns_nothing_completed(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, harness: Harness, where: str
) -> None:
    """Crash in the model request after the first tool call, or in the second tool call itself."""
    run_id = f"{run_prefix}-crash-{where}"
    first = Script(crash_in_request=2 if where == "model" else None)
    harness.arm_tool_crash(first, "item-1" if where == "tool" else None)
    with pytest.raises(Crash if where == "model" else harness.tool_crash):
        await harness.build(wf, first).run("look things up", run_id=run_id)
    assert first.model_requests == 2
    assert harness.tool_calls(first) == (["item-0"] if where == "model" else ["item-0", "item-1"])
    keys = {s.key for s in await wf.get_steps(run_id)}
    assert _pinned(harness)[2][0] in keys  # the first tool call is checkpointed

    harness.reset()
    second = Script()
    harness.arm_tool_crash(second, None)
    result = await harness.build(await reopen(), second).run("look things up", run_id=run_id)

    # Requests 1 (and 2 when it completed) come from the store; call-0 is never executed again.
    assert second.model_requests == (2 if where == "model" else 1)
    assert harness.tool_calls(second) == ["item-1"]
    assert result.output == OUTPUT
    assert result.usage.requests == TOTAL_REQUESTS and result.usage.tool_calls == ROUNDS
    assert [(s.key, s.task) for s in await wf.get_steps(run_id)] == _pinned(harness)
    run = await wf.get_run(run_id)
    assert run is not None and run.status is RunStatus.COMPLETED


async def test_replay_of_a_finished_run_executes_nothing(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, harness: Harness
) -> None:
    run_id = f"{run_prefix}-replay"
    result = await harness.build(wf, Script()).run("look things up", run_id=run_id)
    harness.reset()
    again = Script()
    replayed = await harness.build(await reopen(), again).run("look things up", run_id=run_id)

    assert (again.model_requests, harness.tool_calls(again)) == (0, [])
    if isinstance(harness, McpHarness):
        assert harness.server_starts() == 0  # not even the MCP server is started
    assert replayed.output == result.output == OUTPUT
    assert replayed.all_messages() == result.all_messages()
    assert replayed.usage == result.usage
    assert [(s.key, s.task) for s in await wf.get_steps(run_id)] == _pinned(harness)


async def test_dynamic_toolset_added_after_binding_is_still_refused(wf: Workflow, run_prefix: str) -> None:
    """A capability bound when the agent is constructed never wrapped a later ``@agent.toolset``:
    its calls would not be steps, so pydantic-ai's guard must still refuse it inside a durable run."""
    script = Script()
    agent: Agent[None, str] = Agent(
        FunctionModel(script.model), name="late", capabilities=[DurableCapability(wf)]
    )

    @agent.toolset(id="late-lookups")
    def late(ctx: RunContext[None]) -> AbstractToolset[None]:
        return script.lookup_toolset()

    @wf.workflow(name="late_toolset")
    async def flow() -> str:
        return (await agent.run("look things up")).output

    with pytest.raises(UserError, match="cannot be added at runtime"):
        await flow.run(f"{run_prefix}-late")
    assert (script.model_requests, script.tool_calls) == (0, [])
