"""Workflow(version=...) (issue 19): each run records the versions of the code that executed it, in
its journal (a durable:version step, written once per version), which replays and patches ignore."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow
from durable._versions import versions_of
from durable.errors import ConfigurationError

from helpers import Calls

DURABLE = [sys.executable, "-c", "from durable.cli import main; main()"]


def release(url: str, version: str | None, calls: Calls) -> tuple[Workflow, Any]:
    wf = Workflow("app", db=url, default_retries=0, version=version)

    @wf.task
    async def work(n: int) -> int:
        calls(f"work {n}")
        return n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        new = await wf.patched("p")  # the version step is not a step past this point
        await work(n)
        await wf.signal("go")
        await wf.signal("go")
        return n if new else -n

    return wf, job


async def _until_waiting(wf: Workflow, run_id: str, steps: int = 0) -> None:
    """Let a worker execute the run until it waits with at least ``steps`` checkpoints."""
    stop = asyncio.Event()
    worker = asyncio.create_task(wf.worker(poll_interval=0.01).run(stop))
    try:
        for _ in range(2000):
            run = await wf.get_run(run_id)
            parked = run is not None and run.status.value == "waiting" and run.owner is None
            if parked and len(await wf.get_steps(run_id)) >= steps:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("never waiting")
    finally:
        stop.set()
        await worker


async def test_each_version_that_executes_a_run_is_recorded_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    calls = Calls()
    first, job = release(url, "2026.12.1", calls)
    async with first:
        run_id = await job.start(1)
        await _until_waiting(first, run_id)
        await first.complete(run_id, "go", delivery_id="1")
        await _until_waiting(first, run_id, steps=4)  # resumed by the same version: recorded once
        steps = await first.get_steps(run_id)
        assert [s.key for s in steps] == [
            "durable:version@2026.12.1", "durable:patch@p", "work", "durable:signal@go",
        ]  # fmt: skip
        await first.complete(run_id, "go", delivery_id="2")
    second, _ = release(url, "2026.12.2", calls)
    async with second:
        assert await second.resume(run_id) == 1
        steps = await second.get_steps(run_id)
        assert versions_of(steps) == ["2026.12.1", "2026.12.2"]
        assert (await second.check_replay(store=url, statuses=["completed"])).ok
    assert calls.log == ["work 1"]

    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    shown = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            "from durable.cli import main; main()",
            "runs",
            "show",
            run_id,
            "--store",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    assert "versions" in shown.stdout and "2026.12.1, 2026.12.2" in shown.stdout


async def test_no_version_records_nothing(tmp_path: Path) -> None:
    calls = Calls()
    wf, job = release(f"sqlite:///{tmp_path / 'v.db'}", None, calls)
    async with wf:
        run_id = await job.start(2)
        await _until_waiting(wf, run_id)
        assert [s.key for s in await wf.get_steps(run_id)] == ["durable:patch@p", "work"]


@pytest.mark.parametrize("bad", ["", 3, "a\x00b", "x" * 201])
def test_a_version_that_no_store_can_hold_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"Workflow\('app'\): version"):
        Workflow("app", db="memory://", version=bad)


async def test_runs_are_listed_by_version_in_python_and_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    calls = Calls()
    old, job = release(url, "1.0", calls)
    async with old:
        for n in (1, 2):
            await _until_waiting(old, await job.start(n))
    new, job2 = release(url, "2.0", calls)
    async with new:
        await _until_waiting(new, await job2.start(3))
        assert sorted(r.run_id for r in await new.list_runs(version="1.0")) == ["job-1", "job-2"]
        assert [r.run_id for r in await new.list_runs(version="2.0")] == ["job-3"]
        assert len(await new.list_runs(version="1.0", limit=1)) == 1
        assert await new.list_runs(version="9") == []

    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    listed = await asyncio.to_thread(
        subprocess.run,
        [*DURABLE, "runs", "list", "--store", url, "--version", "1.0", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["run_id"] for r in json.loads(listed.stdout)) == ["job-1", "job-2"]


async def test_the_run_keeps_the_version_that_created_it_and_each_checkpoint_the_one_that_wrote_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    calls = Calls()
    first, job = release(url, "2026.12.1", calls)
    async with first:
        run_id = await job.start(5)
        await _until_waiting(first, run_id)
        await first.complete(run_id, "go", delivery_id="1")
        await _until_waiting(first, run_id, steps=4)
        await first.complete(run_id, "go", delivery_id="2")
    second, _ = release(url, "2026.12.2", calls)
    async with second:
        assert await second.resume(run_id) == 5
        run = await second.get_run(run_id)
        assert run is not None and run.version == "2026.12.1"  # the creator's, not the finisher's
        written = {s.key: s.version for s in await second.get_steps(run_id)}
        assert written == {
            "durable:version@2026.12.1": "2026.12.1", "durable:patch@p": "2026.12.1", "work": "2026.12.1",
            "durable:signal@go": "2026.12.1", "durable:version@2026.12.2": "2026.12.2",
            "durable:signal@go#1": "2026.12.2",
        }  # fmt: skip
        assert [r.run_id for r in await second.list_runs(version="2026.12.1")] == [run_id]
        assert await second.list_runs(version="2026.12.2") == []

    env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    shown = await asyncio.to_thread(
        subprocess.run,
        [*DURABLE, "runs", "show", run_id, "--store", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["version"] == "2026.12.1"
    assert {s["key"]: s["version"] for s in data["steps"]} == written
