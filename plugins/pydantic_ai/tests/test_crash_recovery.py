"""A crash after the N-th model request: the re-run makes only the remaining requests and re-runs
only the interrupted tool call (in-process exception, and a real process killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from agent_app import ROUNDS, Crash, Recorder, build, read_log

from durable import RunStatus, Workflow
from durable.backoff import constant

APP = Path(__file__).with_name("agent_app.py")
TOTAL_REQUESTS = ROUNDS + 1


@pytest.mark.parametrize("n", range(1, ROUNDS + 1))
async def test_exception_after_nth_model_request(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, n: int
) -> None:
    run_id = f"{run_prefix}-crash"
    first = Recorder(crash_in_tool_call=n)
    with pytest.raises(Crash):
        await build(wf, first).run("look things up", run_id=run_id)
    assert first.model_requests == n
    assert first.tool_calls == [f"item-{i}" for i in range(n)]

    second = Recorder()
    result = await build(await reopen(), second).run("look things up", run_id=run_id)

    assert second.model_requests == TOTAL_REQUESTS - n
    # Only the interrupted call (item n-1) runs again, then the ones never reached.
    assert second.tool_calls == [f"item-{i}" for i in range(n - 1, ROUNDS)]
    assert result.output == f"looked up {ROUNDS} items"
    assert result.usage.requests == TOTAL_REQUESTS
    run = await wf.get_run(run_id)
    assert run is not None and run.status is RunStatus.COMPLETED


@pytest.mark.parametrize("n", range(1, ROUNDS + 1))
async def test_cancellation_in_nth_tool_call(
    wf: Workflow, reopen: Callable[[], Awaitable[Workflow]], run_prefix: str, n: int
) -> None:
    """An interruption (task cancelled, as on shutdown) mid tool call leaves a resumable run."""
    run_id = f"{run_prefix}-cancel"
    first = Recorder()
    started = asyncio.Event()
    original = first.tool

    async def slow_tool(item: str) -> str:
        if len(first.tool_calls) == n - 1:
            first.tool_calls.append(item)
            started.set()
            await asyncio.sleep(3600)
        return await original(item)

    first.tool = slow_tool  # type: ignore[method-assign]
    task = asyncio.ensure_future(build(wf, first).run("look things up", run_id=run_id))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.model_requests == n

    second = Recorder()
    result = await build(await reopen(), second).run("look things up", run_id=run_id)
    assert second.model_requests == TOTAL_REQUESTS - n
    assert second.tool_calls == [f"item-{i}" for i in range(n - 1, ROUNDS)]
    assert result.output == f"looked up {ROUNDS} items"


def _spawn(url: str, run_id: str, log: Path, hang: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(APP), url, run_id, str(log), str(hang)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
@pytest.mark.parametrize("n", range(1, ROUNDS + 1))
def test_sigkill_after_nth_model_request(
    persistent_store_url: str, tmp_path: Path, run_prefix: str, n: int
) -> None:
    run_id = f"{run_prefix}-kill"
    log = tmp_path / "calls.log"
    ready = Path(f"{log}.ready")
    proc = _spawn(persistent_store_url, run_id, log, hang=n)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the child never reached the tool call"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_log(log)
    assert before["model"] == n
    assert before["tool"] == n

    resumed = _spawn(persistent_store_url, run_id, log, hang=0)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err.decode()
    after = read_log(log)
    assert after["model"] == TOTAL_REQUESTS, "a model request was made twice"
    # Each tool call ran once, except the one the kill interrupted.
    for i in range(ROUNDS):
        assert after[f"tool:item-{i}"] == (2 if i == n - 1 else 1), (i, after)
    assert "looked up 3 items" in Path(f"{log}.result").read_text()


async def test_interrupted_run_is_resumed_by_a_fresh_workflow_object(tmp_path: Path, run_prefix: str) -> None:
    """A new Workflow (as after a restart) on the same SQLite file finishes the run."""
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    run_id = f"{run_prefix}-restart"
    async with Workflow("pai-tests", db=url, default_backoff=constant(0)) as wf1:
        with pytest.raises(Crash):
            await build(wf1, Recorder(crash_in_tool_call=2)).run("look things up", run_id=run_id)
    async with Workflow("pai-tests", db=url, default_backoff=constant(0)) as wf2:
        second = Recorder()
        result = await build(wf2, second).run("look things up", run_id=run_id)
    assert second.model_requests == TOTAL_REQUESTS - 2
    assert result.output == f"looked up {ROUNDS} items"
