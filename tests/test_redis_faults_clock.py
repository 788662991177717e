"""One clock on Redis (issue 15, item 4): processes whose clocks are a minute off agree on who holds a run.

Real `durable worker` processes and a direct caller on a Redis server of the test's own; a
skewed process has ``time.time`` itself shifted (the core's clock and the store's alike), as a
host whose clock is wrong would. Every step execution is logged with its process id.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import RedisServer

from durable import RunStatus, Workflow

pytestmark = pytest.mark.slow

SKEW = 60.0
LEASE = 3.0

APP = textwrap.dedent(
    f"""
    import asyncio, os
    from durable import Workflow

    wf = Workflow("skew", db=os.environ["SKEW_DB"], lease_seconds={LEASE}, default_retries=0)

    @wf.task
    async def work(n: int) -> int:
        with open(os.environ["SKEW_LOG"], "a") as f:
            f.write(f"{{os.getpid()}} {{n}}\\n")
        await asyncio.sleep(float(os.environ["SKEW_STEP"]))
        return n

    @wf.workflow(id="job-{{n}}")
    async def job(n: int) -> int:
        return await work(n)
    """
)

LAUNCH = textwrap.dedent(
    """
    import asyncio, sys, time

    real = time.time
    skew = float(sys.argv[1])
    time.time = lambda: real() + skew  # this process's clock is off by skew seconds

    if sys.argv[2] == "worker":
        from durable.cli import main

        main(["worker", "skewapp:wf", "--poll", "0.05"])
    else:  # call N: a direct call of job-N, which owns its run from its creation
        import skewapp

        async def call() -> None:
            print(await skewapp.job(int(sys.argv[3])), flush=True)
            await skewapp.wf.close()

        asyncio.run(call())
    """
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = RedisServer(tmp_path)
    redis.start()
    yield redis
    redis.stop()


class Fleet:
    """Processes of the skew application, stopped at the end."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        (tmp_path / "skewapp.py").write_text(APP)
        (tmp_path / "launch.py").write_text(LAUNCH)
        self.dir, self.url, self.log = tmp_path, url, tmp_path / "steps.log"
        self.processes: list[subprocess.Popen[str]] = []

    def spawn(self, skew: float, *args: str, step: float) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "SKEW_DB": self.url,
            "SKEW_LOG": str(self.log),
            "SKEW_STEP": str(step),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.dir), os.environ.get("PYTHONPATH")])),
        }
        process = subprocess.Popen(
            [sys.executable, str(self.dir / "launch.py"), str(skew), *args],
            cwd=self.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def worker(self, skew: float, step: float) -> subprocess.Popen[str]:
        return self.spawn(skew, "worker", step=step)

    def executions(self) -> list[tuple[int, int]]:
        if not self.log.exists():
            return []
        return [(int(pid), int(n)) for pid, n in (line.split() for line in self.log.read_text().splitlines())]

    def wait_for_executions(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.executions()) < count:
            assert time.monotonic() < deadline, f"executions: {self.executions()}"
            time.sleep(0.02)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


@pytest.fixture
def fleet(tmp_path: Path, server: RedisServer) -> Iterator[Fleet]:
    group = Fleet(tmp_path, server.url)
    yield group
    group.stop()


def start_runs(url: str, numbers: list[int]) -> None:
    async def main() -> None:
        wf = Workflow("skew", db=url)

        @wf.workflow(id="job-{n}")
        async def job(n: int) -> int:
            raise AssertionError("executed by the workers only")

        for n in numbers:
            await job.start(n)
        await wf.close()

    asyncio.run(main())


def finished(url: str) -> dict[str, int]:
    async def main() -> dict[str, int]:
        wf = Workflow("skew", db=url)
        runs = await wf.list_runs(statuses=frozenset({RunStatus.COMPLETED}))
        await wf.close()
        return {run.run_id: int(run.result or "0") for run in runs}

    return asyncio.run(main())


def wait_finished(url: str, count: int, timeout: float) -> float:
    """Seconds until ``count`` runs completed."""
    started = time.monotonic()
    while len(finished(url)) < count:
        assert time.monotonic() - started < timeout, f"completed after {timeout} s: {finished(url)}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_worker_whose_clock_runs_a_minute_ahead_takes_over_no_live_run(fleet: Fleet) -> None:
    owner = fleet.worker(0.0, step=LEASE + 1.5)  # each step outlives a lease: renewals keep it
    start_runs(fleet.url, [1, 2, 3, 4])
    fleet.wait_for_executions(4)
    fleet.worker(SKEW, step=0.0)  # by its clock every lease the owner holds expired a minute ago
    wait_finished(fleet.url, 4, timeout=30)
    assert sorted(fleet.executions()) == [(owner.pid, n) for n in (1, 2, 3, 4)]


def test_a_worker_whose_clock_runs_a_minute_behind_resumes_a_dead_owners_runs_on_time(fleet: Fleet) -> None:
    owner = fleet.worker(0.0, step=600.0)
    start_runs(fleet.url, [1, 2, 3, 4])
    fleet.wait_for_executions(4)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    killed = time.monotonic()
    late = fleet.worker(-SKEW, step=0.0)  # by its clock the dead owner's leases last another minute
    wait_finished(fleet.url, 4, timeout=30)
    # The leases expire LEASE seconds after the owner's last renewal, by the server's clock.
    assert time.monotonic() - killed < LEASE + 5
    resumed = [n for pid, n in fleet.executions() if pid == late.pid]
    assert sorted(resumed) == [1, 2, 3, 4]


def test_a_direct_call_from_a_host_a_minute_slow_keeps_its_run(fleet: Fleet) -> None:
    worker = fleet.worker(0.0, step=0.0)
    caller = fleet.spawn(-SKEW, "call", "7", step=LEASE + 1.5)
    out, err = caller.communicate(timeout=30)
    assert caller.returncode == 0, err
    assert out.split() == ["7"]
    # Its new run's lease, given by a clock a minute slow, would have expired on arrival.
    assert fleet.executions() == [(caller.pid, 7)]
    assert worker.poll() is None
