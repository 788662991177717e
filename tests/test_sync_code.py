"""Sync code (issue 20, part 3): plain ``def`` tasks in a bounded thread pool, and ``run_sync``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from durable import RunStatus, Workflow, current_run
from durable.backoff import constant
from durable.errors import ConfigurationError, StepTimeout
from durable.testing import virtual_time

from helpers import Calls


async def test_a_def_task_runs_in_a_thread_and_is_checkpointed_and_replayed(
    wf: Workflow, calls: Calls
) -> None:
    threads: list[str] = []
    runs: list[str | None] = []

    @wf.task
    def add(a: int, b: int) -> int:
        calls("add")
        threads.append(threading.current_thread().name)
        run = current_run()  # the caller's context reaches the thread
        runs.append(None if run is None else run.run_id)
        return a + b

    @wf.workflow(id="sums")
    async def sums() -> list[int]:
        return [await add(1, 2), await add(3, 4)]

    assert await sums() == [3, 7]
    assert await sums() == [3, 7]  # replayed: no thread runs
    assert calls.count("add") == 2
    assert all(name.startswith("durable-tests") for name in threads)
    assert [s.key for s in await wf.get_steps("sums")] == ["add", "add#1"]
    assert await add(5, 6) == 11  # outside a run: called plainly, still in a thread
    assert calls.count("add") == 3 and runs == ["sums", "sums", None]


async def test_a_def_task_is_retried_with_backoff_in_virtual_time(wf: Workflow, calls: Calls) -> None:
    @wf.task(retries=3, backoff=constant(60))
    def flaky() -> str:
        calls("try")
        if calls.count("try") < 3:
            raise ConnectionError("down")
        return "up"

    @wf.workflow(id="flaky")
    async def flow() -> str:
        return await flaky()

    async with virtual_time() as clock:
        assert await flow() == "up"
    assert calls.count("try") == 3 and [round(j) for j in clock.jumps] == [60, 60]
    [step] = await wf.get_steps("flaky")
    assert step.attempts == 3


async def test_a_def_task_timeout_stops_the_wait_not_the_thread(wf: Workflow, calls: Calls) -> None:
    finished = threading.Event()

    @wf.task(timeout=0.05, retries=1, backoff=constant(0))
    def slow() -> str:
        calls("slow")
        if calls.count("slow") == 1:
            time.sleep(0.5)  # the first attempt overruns its timeout
            finished.set()
            return "late"
        return "quick"

    @wf.workflow(id="slow")
    async def flow() -> str:
        return await slow()

    assert await flow() == "quick"  # the second attempt's result is the checkpoint
    assert not finished.is_set()  # the first attempt's thread still runs...
    assert await asyncio.to_thread(finished.wait, 5)  # ...to its end, its result discarded
    [step] = await wf.get_steps("slow")
    assert step.attempts == 2 and "StepTimeout" in (step.error or "")

    @wf.task(timeout=0.05, retries=0)
    def stuck() -> None:
        time.sleep(0.3)

    @wf.workflow(id="stuck")
    async def stuck_flow() -> None:
        await stuck()

    with pytest.raises(StepTimeout):
        await stuck_flow()


async def test_max_threads_bounds_how_many_def_tasks_run_at_once(tmp_path: Path) -> None:
    wf = Workflow("bounded", db=f"sqlite:///{tmp_path / 'b.db'}", max_threads=2)
    lock, running, most = threading.Lock(), [0], [0]

    @wf.task
    def work(n: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return n

    @wf.workflow(id="fan")
    async def fan() -> list[int]:
        return list(await asyncio.gather(*(work(n) for n in range(6))))

    try:
        assert await fan() == list(range(6))
    finally:
        await wf.close()
    assert most[0] == 2


def test_functions_that_are_not_plain_or_async_are_refused() -> None:
    wf = Workflow("refuse", db="memory://")

    def numbers() -> Any:
        yield 1

    async def stream() -> Any:
        yield 1

    for fn in (numbers, stream, int):
        with pytest.raises(ConfigurationError, match="async def' function or a plain 'def'"):
            wf.task(fn)
    with pytest.raises(ConfigurationError):
        Workflow("refuse", db="memory://", max_threads=0)


def test_a_def_workflow_body_is_refused_with_what_to_write_instead() -> None:
    wf = Workflow("refuse-body", db="memory://")

    def pipeline() -> int:
        return 1

    with pytest.raises(ConfigurationError, match=r"'async def'.*plain 'def' functions.*run_sync") as caught:
        wf.workflow(pipeline)
    assert "pipeline" in str(caught.value)


def test_run_sync_runs_a_workflow_from_plain_code_and_keeps_the_store_open(tmp_path: Path) -> None:
    wf = Workflow("script", db=f"sqlite:///{tmp_path / 's.db'}")
    loops: set[int] = set()

    @wf.task
    def double(n: int) -> int:
        return n * 2

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        loops.add(id(asyncio.get_running_loop()))
        return await double(n)

    try:
        assert job.run_sync(2) == 4
        store = wf.run_sync(wf.get_store())
        with ThreadPoolExecutor(4) as threads:  # request threads of a web app
            assert list(threads.map(job.run_sync, range(10, 18))) == [n * 2 for n in range(10, 18)]
        assert wf.run_sync(wf.get_store()) is store  # one store, opened once
        assert len(loops) == 1
        run = wf.run_sync(wf.get_run("job-12"))
        assert run is not None and run.status is RunStatus.COMPLETED
    finally:
        wf.close_sync()
    assert job.run_sync(3) == 6  # a new loop after close_sync
    wf.close_sync()


async def test_run_sync_refuses_a_running_event_loop() -> None:
    wf = Workflow("in-loop", db="memory://")

    @wf.workflow(id="x")
    async def x() -> int:
        return 1

    with pytest.raises(ConfigurationError, match=r"inside a running event loop.*await the call instead"):
        x.run_sync()


def test_run_sync_refuses_a_call_from_inside_a_run() -> None:
    wf = Workflow("nested", db="memory://")

    @wf.workflow(id="inner")
    async def inner() -> int:
        return 1

    @wf.task
    def calls_back() -> int:
        return inner.run_sync()

    @wf.workflow(id="outer")
    async def outer() -> int:
        return await calls_back()

    try:
        with pytest.raises(ConfigurationError, match="inside run 'outer'"):
            outer.run_sync()
    finally:
        wf.close_sync()


SCRIPT = """
import sys, time
from durable import Workflow

wf = Workflow("script", db=sys.argv[1], lease_seconds=30)

@wf.task
def slow() -> None:
    print("started", flush=True)
    time.sleep(3)
    print("thread done", flush=True)

@wf.workflow(id="long")
async def long() -> None:
    await slow()

long.run_sync()
"""


@pytest.mark.slow
def test_ctrl_c_in_a_script_leaves_the_run_interrupted_and_resumable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "started"
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert "KeyboardInterrupt" in err
    # Python waits for a pool's threads at exit: the task's thread ran on to its end.
    assert out.strip() == "thread done"
    wf = Workflow("script", db=url)
    try:
        run = wf.run_sync(wf.get_run("long"))
    finally:
        wf.close_sync()
    # The lease was given back on the way out (not left to expire 30 s later).
    assert run is not None and run.status is RunStatus.INTERRUPTED and run.lease_token == 1
    assert run.lease_expires_at is not None and run.lease_expires_at <= time.time()
