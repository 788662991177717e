"""An owner paused past its lease (SIGSTOP, a blocked event loop) starts no new step when it wakes:
the step the new owner committed runs exactly once. On SQLite, and on Postgres and Redis (a schema
or key prefix of the test's own on the shared servers), whose lease clock is the server's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import isolated_stores
import pytest

from durable import LeaseLost, RunStatus, Workflow

pytestmark = pytest.mark.slow

APP = """
import asyncio, os, sys, time
from durable import Workflow

wf = Workflow("paused", db=sys.argv[1], lease_seconds=1.0, default_retries=0)
log = sys.argv[2]

def record(what):
    with open(log, "a") as f:
        f.write(f"{what} {os.getpid()}\\n")

@wf.task
async def first() -> None:
    record("first")

@wf.task
async def second() -> None:
    record("second")

@wf.workflow(id="paused")
async def paused() -> None:
    await first()
    print("between", flush=True)
    if sys.argv[3] == "block":
        time.sleep(2.5)  # sync code or a GC pause: the event loop stands still
    else:
        await asyncio.sleep(0.3)  # the test stops the process here
    await second()

try:
    asyncio.run(paused())
except Exception as exc:
    print(type(exc).__name__, flush=True)
"""


def lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with isolated_stores.store_url(request.param, tmp_path, "paused") as url:
        yield url


def other_owner_finishes(db: str, log: Path) -> None:
    """Another executor takes the run once the paused owner's lease has expired, and finishes it."""
    wf = Workflow("paused", db=db, lease_seconds=1.0, default_retries=0)

    def record(what: str) -> None:
        with log.open("a") as f:
            f.write(f"{what} {os.getpid()}\n")

    @wf.task
    async def first() -> None:
        record("first")

    @wf.task
    async def second() -> None:
        record("second")

    @wf.workflow(id="paused")
    async def paused() -> None:
        await first()
        await second()

    async def main() -> None:
        await paused.call("paused", wait=True, timeout=10)
        run = await wf.get_run("paused")
        assert run is not None and run.status is RunStatus.COMPLETED
        await wf.close()

    asyncio.run(main())


@pytest.mark.parametrize("pause", ["sigstop", "block"])
def test_an_owner_paused_past_its_lease_does_not_start_the_next_step(
    store_url: str, tmp_path: Path, pause: str
) -> None:
    db = store_url
    log = tmp_path / "paused.log"
    child = subprocess.Popen(
        [sys.executable, "-c", APP, str(db), str(log), pause], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "between"
        if pause == "sigstop":
            os.kill(child.pid, signal.SIGSTOP)
        time.sleep(1.3)  # past the 1 s lease
        other_owner_finishes(db, log)
        if pause == "sigstop":
            os.kill(child.pid, signal.SIGCONT)
        out, _ = child.communicate(timeout=20)
    finally:
        child.kill()
    assert out.strip() == LeaseLost.__name__
    me = str(os.getpid())
    entries = list(zip(lines(log)[::2], lines(log)[1::2], strict=True))
    assert [what for what, _ in entries] == ["first", "second"]
    assert entries[1] == ("second", me)  # only the new owner ran it
