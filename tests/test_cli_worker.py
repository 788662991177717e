"""`durable worker MODULE:ATTRIBUTE --store URL`: a real worker process resumes stored runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from durable import RunStatus, Workflow

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

APP = textwrap.dedent(
    """
    from durable import Workflow

    wf = Workflow("jobs", db="memory://")  # the command line points it at the real store

    @wf.task
    async def square(n: int) -> int:
        return n * n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return await square(n)
    """
)


def test_the_worker_command_resumes_pending_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "jobsapp.py").write_text(APP)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    sys.path.insert(0, str(tmp_path))
    try:
        import jobsapp  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))

    async def enqueue() -> None:
        jobsapp.wf.use_store(url)
        async with jobsapp.wf:
            for n in range(3):
                await jobsapp.job.start(n)

    asyncio.run(enqueue())
    durable = Path(sys.executable).with_name("durable")
    worker = subprocess.Popen(
        [str(durable), "worker", "jobsapp:wf", "--store", url, "--poll", "0.05"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )

    async def statuses() -> list[RunStatus]:
        async with Workflow("jobs", db=url) as wf:
            return [run.status for run in await wf.list_runs()]

    try:
        deadline = time.monotonic() + 30
        while asyncio.run(statuses()) != [RunStatus.COMPLETED] * 3:
            assert time.monotonic() < deadline, "the worker did not finish the runs"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "serving job from <SQLiteStore" in stderr


def test_a_bad_target_is_one_clear_line(tmp_path: Path) -> None:
    durable = Path(sys.executable).with_name("durable")
    result = subprocess.run(
        [str(durable), "worker", "no_such_module:wf"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot import 'no_such_module'")
    assert result.stderr.count("\n") == 1
