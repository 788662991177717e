"""Deferred tools / approval requests wait on durable signals, across a process restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from approval_app import build
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests, DeferredToolResults

from durable import RunStatus, Workflow
from durable_pydantic_ai import DurableAgent, ResumeToken

APP = Path(__file__).with_name("approval_app.py")


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def _wait_until_waiting(wf: Workflow, run_id: str) -> None:
    for _ in range(500):
        run = await wf.get_run(run_id)
        if run is not None and run.status is RunStatus.WAITING:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run never waited for its approval")


async def test_approval_in_process(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    run_id = f"{run_prefix}-a"
    task = asyncio.ensure_future(build(wf, log).run("refund my order", run_id=run_id))
    await _wait_until_waiting(wf, run_id)
    assert _lines(log) == ["model", "ask"]
    pending = json.loads(Path(f"{log}.pending").read_text())
    assert pending["calls"] == ["refund-1"]
    assert await wf.complete(run_id, "approval", {"approvals": {"refund-1": True}})
    result = await asyncio.wait_for(task, 10)
    assert result.output == "refund: 30 EUR refunded"
    assert _lines(log) == ["model", "ask", "refund", "model"]

    # Replaying the finished run neither asks nor refunds again.
    again = await build(await reopen(), log).run("refund my order", run_id=run_id)
    assert again.output == result.output and _lines(log) == ["model", "ask", "refund", "model"]


async def test_denied_approval_reaches_the_model(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    run_id = f"{run_prefix}-d"
    task = asyncio.ensure_future(build(wf, log).run("refund my order", run_id=run_id))
    await _wait_until_waiting(wf, run_id)
    token = ResumeToken.parse(json.loads(Path(f"{log}.pending").read_text())["token"])
    assert token.run_id == run_id and token.signal == "approval"
    durable = build(await reopen(), log)  # another process answers
    assert await durable.resolve(token, DeferredToolResults(approvals={"refund-1": False}))
    result = await asyncio.wait_for(task, 10)
    assert "refund" not in _lines(log)
    assert result.output.startswith("refund: ")


async def test_answer_given_by_the_handler_is_journaled(wf: Workflow, run_prefix: str) -> None:
    asked: list[str] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) > 1:
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(parts=[ToolCallPart("delete", {}, tool_call_id="del")])

    agent = Agent(FunctionModel(respond), name="auto-approver")
    deleted: list[int] = []

    @agent.tool_plain(requires_approval=True)
    async def delete() -> str:
        deleted.append(1)
        return "deleted"

    async def policy(ctx: object, requests: DeferredToolRequests, token: ResumeToken) -> DeferredToolResults:
        asked.append(str(token))
        return DeferredToolResults(approvals={c.tool_call_id: True for c in requests.approvals})

    durable = DurableAgent(agent, wf, on_approval_request=policy)
    assert (await durable.run("go", run_id=f"{run_prefix}-p")).output == "done"
    assert len(asked) == 1 and deleted == [1]


async def test_handle_deferred_false_ends_the_run_with_requests(wf: Workflow, run_prefix: str) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("delete", {}, tool_call_id="del")])

    agent = Agent(FunctionModel(respond), name="deferring", output_type=[str, DeferredToolRequests])

    @agent.tool_plain(requires_approval=True)
    async def delete() -> str:
        return "deleted"

    durable = DurableAgent(agent, wf, handle_deferred=False)
    result = await durable.run("go", run_id=f"{run_prefix}-h")
    replayed = await durable.run("go", run_id=f"{run_prefix}-h")
    assert isinstance(result.output, DeferredToolRequests)
    assert isinstance(replayed.output, DeferredToolRequests)
    assert [c.tool_call_id for c in replayed.output.approvals] == ["del"]


@pytest.mark.slow
def test_approval_across_a_process_restart(
    persistent_store_url: str, tmp_path: Path, run_prefix: str
) -> None:
    log = tmp_path / "log"
    run_id = f"{run_prefix}-restart"
    cmd = [sys.executable, str(APP), persistent_store_url, run_id, str(log)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pending = Path(f"{log}.pending")
    deadline = time.monotonic() + 60
    while not pending.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)

    async def status() -> RunStatus | None:
        async with Workflow("pai-approvals", db=persistent_store_url) as wf:
            for _ in range(500):
                run = await wf.get_run(run_id)
                if run is not None and run.status is RunStatus.WAITING:
                    return run.status
                await asyncio.sleep(0.01)
            return None

    assert asyncio.run(status()) is RunStatus.WAITING
    os.kill(first.pid, signal.SIGKILL)  # the process dies while the run waits for its approval
    first.wait()
    assert _lines(log) == ["model", "ask"]

    async def approve() -> bool:
        async with Workflow("pai-approvals", db=persistent_store_url) as wf:
            return await wf.complete(run_id, "approval", {"approvals": {"refund-1": True}})

    assert asyncio.run(approve())
    second = subprocess.run(cmd, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr.decode()
    assert Path(f"{log}.result").read_text() == "refund: 30 EUR refunded"
    # Not asked again, the first model request not repeated, the refund made once.
    assert _lines(log) == ["model", "ask", "refund", "model"]
