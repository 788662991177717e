"""What a run records (issue 22, defect 1): a run resumed from the store alone (``resume``, a
worker) gets the caller's arguments back, rebuilds its deps with ``deps_factory``, or is refused
before any model request, naming what it lacks, and stays resumable by its caller.

Each test crashes a run in its second tool call (after two model requests), then resumes it
from another Workflow on the same store, as a restarted process would (``wf.resume`` through
``DurableAgent.resume``, a run reset by ``durable runs resume`` and taken by a worker).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.run import AgentRunResult
from pydantic_ai.usage import UsageLimits
from script_agent import Crash, Deps, Report, Script

from durable import RunConflictError, RunStatus, Workflow
from durable.errors import ConfigurationError
from durable_pydantic_ai import DurableAgent, RunArgumentsMissing, TaskConfig

Reopen = Callable[[], Awaitable[Workflow]]
NO_RETRY = TaskConfig(retries=0)


@dataclass
class Tenant:
    """Deps that are data: ``record_deps=True`` records them whole."""

    prefix: str


class Factory:
    """A deps_factory that remembers what it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, run_id: str, recorded: Any) -> Deps:
        self.calls.append((run_id, recorded))
        return Deps(prefix=recorded["prefix"])


def durable(script: Script, wf: Workflow, **options: Any) -> DurableAgent[Deps, str]:
    return DurableAgent(script.agent(), wf, model_task_config=NO_RETRY, tool_task_config=NO_RETRY, **options)


async def crash_first(wf: Workflow, run_id: str, options: dict[str, Any], **arguments: Any) -> Script:
    """Run ``run_id`` until it crashes in its second lookup (two model requests made)."""
    first = Script(crash_in_item="item-1")
    with pytest.raises(Crash):
        await durable(first, wf, **options).run("look up two items", run_id=run_id, **arguments)
    assert first.requests == [0, 1]
    return first


async def test_a_resumed_run_rebuilds_its_deps_with_the_factory(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-deps"
    record = {"record_deps": lambda deps: {"prefix": deps.prefix}}
    await crash_first(wf, run_id, {**record, "deps_factory": Factory()}, deps=Deps("acme"))

    factory, second = Factory(), Script()
    result = await durable(second, await reopen(), deps_factory=factory, **record).resume(run_id)

    assert isinstance(result, AgentRunResult)
    assert result.output == "main: acme:item-0, acme:item-1"
    assert factory.calls == [(run_id, {"prefix": "acme"})]
    assert second.requests == [2], "the two finished model requests replay from the store"
    assert second.tool_calls == ["item-1"]
    assert result.usage.requests == 3


async def test_a_run_with_deps_is_refused_without_a_factory_and_stays_resumable(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-nodeps"
    await crash_first(wf, run_id, {}, deps=Deps("acme"))

    other = await reopen()
    second = Script()
    resumer = durable(second, other)
    with pytest.raises(RunArgumentsMissing) as info:
        await resumer.resume(run_id)
    assert str(info.value) == (
        f"run {run_id!r} needs deps: give DurableAgent a deps_factory, or resume it from the caller"
    )
    assert info.value.run_id == run_id and info.value.missing == ("deps",)
    assert (second.requests, second.tool_calls) == ([], []), "refused before any model request"
    run = await other.get_run(run_id)
    assert run is not None and run.status is RunStatus.FAILED

    # Its caller, which has the deps, finishes it from the journal.
    result = await resumer.run("look up two items", run_id=run_id, deps=Deps("acme"))
    assert result.output == "main: acme:item-0, acme:item-1"
    assert second.requests == [2] and second.tool_calls == ["item-1"]


async def test_deps_recorded_as_data_are_rebuilt_from_their_type(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    def agent(script: Script) -> Agent[Tenant, str]:
        built = Agent(FunctionModel(script.model), name="tenant", deps_type=Tenant)

        @built.tool
        async def lookup(ctx: RunContext[Tenant], item: str) -> str:
            script.tool_calls.append(item)
            if item == script.crash_in_item:
                raise Crash(item)
            return f"{ctx.deps.prefix}:{item}"

        return built

    run_id = f"{run_prefix}-data"
    first = Script(crash_in_item="item-1")
    with pytest.raises(Crash):
        await DurableAgent(agent(first), wf, record_deps=True, tool_task_config=NO_RETRY).run(
            "look up two items", run_id=run_id, deps=Tenant("globex")
        )
    second = Script()
    result = await DurableAgent(agent(second), await reopen(), record_deps=True).resume(run_id)
    assert result.output == "main: globex:item-0, globex:item-1"
    assert second.requests == [2]


async def test_a_per_run_output_type_is_recorded_by_name(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-report"
    options = {
        "output_types": [Report],
        "deps_factory": Factory(),
        "record_deps": lambda d: {"prefix": d.prefix},
    }
    await crash_first(wf, run_id, options, deps=Deps("acme"), output_type=Report)

    resumer = durable(Script(), await reopen(), **options)
    result = await resumer.resume(run_id)
    expected = Report(items=["acme:item-0", "acme:item-1"], total=2)
    assert result.output == expected
    # The caller that started it reads the same Report (before: a ValidationError on every call).
    again = await resumer.run("look up two items", run_id=run_id, deps=Deps("acme"), output_type=Report)
    assert again.output == expected


async def test_an_undeclared_output_type_is_refused_on_resume(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-undeclared"
    await crash_first(wf, run_id, {}, output_type=Report, deps=Deps("acme"))
    second = Script()
    resumer = durable(second, await reopen())
    with pytest.raises(
        ConfigurationError, match="output type 'Report', which DurableAgent 'scripted' does not"
    ):
        await resumer.resume(run_id)
    assert second.requests == []
    result = await resumer.run("look up two items", run_id=run_id, output_type=Report, deps=Deps("acme"))
    assert result.output == Report(items=["acme:item-0", "acme:item-1"], total=2)


async def test_usage_limits_are_recorded(wf: Workflow, reopen: Reopen, run_prefix: str) -> None:
    run_id = f"{run_prefix}-limits"
    first = Script(crash_in_item="item-0")
    limits = UsageLimits(request_limit=1)
    with pytest.raises(Crash):
        await durable(first, wf).run("look up two items", run_id=run_id, usage_limits=limits)
    assert first.requests == [0]

    second = Script()
    with pytest.raises(UsageLimitExceeded, match="request_limit of 1"):
        await durable(second, await reopen()).resume(run_id)
    assert second.requests == [], "the limit holds for the resumed run: no second request"


async def test_model_settings_instructions_and_metadata_are_recorded(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-settings"
    arguments: dict[str, Any] = {
        "model_settings": {"temperature": 0.25, "max_tokens": 99},
        "instructions": "Answer in French.",
        "metadata": {"ticket": 42, "tags": ["vip"]},
    }
    first = await crash_first(wf, run_id, {}, **arguments)
    second = Script()
    await durable(second, await reopen()).resume(run_id)
    assert second.settings == first.settings[-1:] == [{"temperature": 0.25, "max_tokens": 99}]
    assert second.instructions == ["Answer in French."]
    assert second.metadata == [{"ticket": 42, "tags": ["vip"]}]


async def test_the_model_is_recorded_by_its_alias(wf: Workflow, reopen: Reopen, run_prefix: str) -> None:
    def alternative(script: Script) -> FunctionModel:
        def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            script.label = "alt"
            return script.model(messages, info)

        return FunctionModel(respond)

    run_id = f"{run_prefix}-alias"
    first = Script(crash_in_item="item-1")
    with pytest.raises(Crash):
        await durable(first, wf, models={"alt": alternative(first)}).run(
            "look up two items", run_id=run_id, model="alt", deps=Deps("x")
        )
    second = Script()
    resumer = durable(
        second, await reopen(), models={"alt": alternative(second)}, deps_factory=lambda r, _: Deps("x")
    )
    result = await resumer.resume(run_id)
    assert result.output.startswith("alt: "), "the resumed run asked the model the caller chose"
    assert second.requests == [2]


async def test_an_unregistered_model_instance_is_refused_before_the_run(
    wf: Workflow, run_prefix: str
) -> None:
    script = Script()
    with pytest.raises(ConfigurationError, match=r"not registered in DurableAgent\(models=\.\.\.\)"):
        await durable(script, wf).run("x", run_id=f"{run_prefix}-m", model=FunctionModel(script.model))
    assert await wf.get_run(f"{run_prefix}-m") is None and script.requests == []


class Shout(AbstractCapability[Any]):
    """A per-run capability: an object, which no store can hold."""


async def test_arguments_that_cannot_be_recorded_are_named(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-live"

    def instructions(ctx: RunContext[Deps]) -> str:
        return f"Serve {ctx.deps.prefix}."

    live: dict[str, Any] = {"instructions": instructions, "capabilities": [Shout()], "deps": Deps("acme")}
    await crash_first(wf, run_id, {"deps_factory": Factory()}, **live)

    second = Script()
    resumer = durable(second, await reopen(), deps_factory=Factory())
    with pytest.raises(RunArgumentsMissing) as info:
        await resumer.resume(run_id)
    assert info.value.missing == ("capabilities", "instructions")
    assert "resume it from the caller" in str(info.value)
    assert second.requests == []
    result = await resumer.run("look up two items", run_id=run_id, **live)
    assert result.output == "main: acme:item-0, acme:item-1"
    assert second.instructions == ["Serve acme."]


async def test_resume_of_a_finished_run_returns_its_agent_run_result(
    wf: Workflow, reopen: Reopen, run_prefix: str
) -> None:
    run_id = f"{run_prefix}-done"
    first = await durable(Script(), wf, output_types=[Report]).run(
        "look up two items", run_id=run_id, output_type=Report, deps=Deps("acme")
    )
    second = Script()
    result = await durable(second, await reopen(), output_types=[Report]).resume(run_id)
    assert isinstance(result, AgentRunResult) and isinstance(result.output, Report)
    assert result.output == first.output
    assert result.all_messages() == first.all_messages() and result.usage == first.usage
    assert second.requests == []


async def test_other_recorded_arguments_are_a_conflict(wf: Workflow, run_prefix: str) -> None:
    agent = durable(Script(), wf)
    await agent.run("look up two items", run_id=f"{run_prefix}-c", usage_limits=UsageLimits(request_limit=5))
    with pytest.raises(RunConflictError):
        await agent.run(
            "look up two items", run_id=f"{run_prefix}-c", usage_limits=UsageLimits(request_limit=9)
        )


async def test_start_refuses_what_a_worker_could_not_rebuild(wf: Workflow, run_prefix: str) -> None:
    agent = durable(Script(), wf)
    with pytest.raises(ConfigurationError, match="would need deps"):
        await agent.start("x", run_id=f"{run_prefix}-s1", deps=Deps("acme"))
    with pytest.raises(ConfigurationError, match="would need instructions"):
        await agent.start("x", run_id=f"{run_prefix}-s2", instructions=lambda ctx: "live")
    assert await wf.get_run(f"{run_prefix}-s1") is None and await wf.get_run(f"{run_prefix}-s2") is None


async def test_start_records_a_run_that_resume_finishes(wf: Workflow, run_prefix: str) -> None:
    script = Script()
    agent = durable(
        script, wf, output_types=[Report], deps_factory=Factory(), record_deps=lambda d: {"prefix": d.prefix}
    )
    run_id = await agent.start("x", run_id=f"{run_prefix}-st", deps=Deps("acme"), output_type=Report)
    run = await wf.get_run(run_id)
    assert run is not None and run.status is RunStatus.PENDING and script.requests == []
    result = await agent.resume(run_id)
    assert result.output == Report(items=["acme:item-0", "acme:item-1"], total=2)


async def test_a_factory_that_returns_none_is_refused(wf: Workflow, reopen: Reopen, run_prefix: str) -> None:
    run_id = f"{run_prefix}-none"
    await crash_first(wf, run_id, {"deps_factory": Factory()}, deps=Deps("acme"))
    second = Script()
    with pytest.raises(ConfigurationError, match="deps_factory returned None"):
        await durable(second, await reopen(), deps_factory=lambda run_id, recorded: None).resume(run_id)
    assert second.requests == []


def test_output_types_need_names(wf: Workflow) -> None:
    with pytest.raises(ConfigurationError, match="has no name to record"):
        durable(Script(), wf, output_types=[list[Report]])
    agent = durable(Script(), wf, output_types={"reports": list[Report]})
    assert agent.name == "scripted"


async def test_text_output_runs_record_no_output_type(wf: Workflow, run_prefix: str) -> None:
    agent = DurableAgent(
        Agent(FunctionModel(lambda m, i: ModelResponse(parts=[TextPart("ok")])), name="t"), wf
    )
    await agent.run("hi", run_id=f"{run_prefix}-t")
    run = await wf.get_run(f"{run_prefix}-t")
    assert run is not None and '"options":null' in run.inputs.replace(" ", "")


async def test_a_refused_run_reset_by_durable_runs_resume_is_finished_by_a_worker(
    tmp_path: Path, run_prefix: str
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    run_id = f"{run_prefix}-cli"
    async with Workflow("pai-tests", db=url, default_retries=0) as wf:
        await crash_first(wf, run_id, {}, deps=Deps("acme"))
    async with Workflow("pai-tests", db=url, default_retries=0) as without_factory:
        with pytest.raises(RunArgumentsMissing):
            await durable(Script(), without_factory).resume(run_id)

    cli = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("durable")),
        *("runs", "resume", run_id, "--store", url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err.decode()
    assert "reset to pending" in out.decode()

    second = Script()
    async with Workflow("pai-tests", db=url, default_retries=0) as wf:
        agent = durable(second, wf, deps_factory=lambda run_id, kept: Deps("acme"))
        worker = wf.worker(poll_interval=0.05)
        assert await worker.poll_once() == 1
        result = await agent.wait_for(run_id, timeout=30)
    assert result.output == "main: acme:item-0, acme:item-1"
    assert second.requests == [2]
