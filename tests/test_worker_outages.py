"""`durable worker` rides out a store outage: servers of the test's own are stopped for seconds
and started again, and the worker process logs it once, carries on and executes every run once."""

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
from servers import PostgresServer, RedisServer

from durable import RunStatus, Workflow

pytestmark = pytest.mark.slow

APP = textwrap.dedent(
    """
    import os
    from durable import Workflow

    wf = Workflow("jobs", db="memory://", lease_seconds=2.0)
    LOG = os.environ["JOBS_LOG"]

    @wf.task
    async def square(n: int) -> int:
        with open(LOG, "a") as f:
            f.write(f"{n}\\n")
        return n * n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return await square(n)
    """
)


@pytest.fixture(params=["redis", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer | PostgresServer]:
    if request.param == "redis":
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        redis = RedisServer(tmp_path)
        redis.start()
        yield redis
        redis.stop()
    else:
        if not (PostgresServer.BIN / "initdb").exists():
            pytest.skip("PostgreSQL 15's initdb is not installed")
        pg = PostgresServer()
        pg.init()
        pg.start()
        yield pg
        pg.stop()
        pg.remove()


def test_a_worker_survives_a_store_outage_and_executes_every_run_once(
    server: RedisServer | PostgresServer, tmp_path: Path
) -> None:
    (tmp_path / "jobsapp.py").write_text(APP)
    log = tmp_path / "jobs.log"
    env = {**os.environ, "JOBS_LOG": str(log), "PYTHONPATH": str(tmp_path)}
    durable = Path(sys.executable).with_name("durable")
    worker = subprocess.Popen(
        [str(durable), "worker", "jobsapp:wf", "--store", server.url, "--poll", "0.05"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start(server.url, [1])
        wait_for_log(log, ["1"])
        server.stop()
        time.sleep(3.0)
        assert worker.poll() is None, "the worker exited during the outage"
        server.start()
        start(server.url, [2])
        wait_for_log(log, ["1", "2"])
        assert worker.poll() is None
        # The log line is written by the task body, before its checkpoint and the run's
        # completion commit, and job-1's commit may still be in its write retry's backoff.
        wait_for_completed(server.url, {"job-1": 1, "job-2": 4})
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=20)
    assert err.count("polling the store failed") == 1, err
    assert err.count("the store answers again") == 1, err
    assert log.read_text().split() == ["1", "2"]


def start(url: str, numbers: list[int]) -> None:
    async def main() -> None:
        wf = Workflow("jobs", db=url)

        @wf.workflow(id="job-{n}")
        async def job(n: int) -> int:
            raise AssertionError("executed by the worker only")

        for n in numbers:
            await job.start(n)
        await wf.close()

    asyncio.run(main())


def completed(url: str) -> dict[str, int]:
    async def main() -> dict[str, int]:
        wf = Workflow("jobs", db=url)
        runs = await wf.list_runs(statuses=frozenset({RunStatus.COMPLETED}))
        await wf.close()
        return {run.run_id: int(run.result or "0") for run in runs}

    return asyncio.run(main())


def wait_for_completed(url: str, expected: dict[str, int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (runs := completed(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runs == expected


def wait_for_log(log: Path, expected: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().split() == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"log is {log.read_text().split() if log.exists() else None}, wanted {expected}")
