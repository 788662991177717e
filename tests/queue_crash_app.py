"""An application for the queue crash tests, served by real ``durable worker`` processes.

    durable worker queue_crash_app:wf --store URL --queue llm      # runs of a queue, concurrency=2
    durable worker queue_crash_app:wf --store URL --queue clock    # a schedule ticking every second
    python queue_crash_app.py start URL RUNS                       # enqueue job-0 .. job-(RUNS-1)

``QUEUE_CRASH_LOG`` names the side-effect log. Each line is appended with one ``write`` to a file
opened ``O_APPEND`` (whole lines from concurrent processes, never interleaved):

    start WALL MONO PID RUN TOKEN          a run's body began (one attempt: its lease token)
    step  WALL MONO PID RUN TOKEN INDEX    a step executed (before its checkpoint)
    end   WALL MONO PID RUN TOKEN          a run's body returned

``MONO`` is ``time.monotonic()``, one clock for every process of this host (CLOCK_MONOTONIC),
which the test compares with the kill times it records; ``WALL`` is ``time.time()``, what the
store stamps checkpoints and schedule ticks with.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import datetime

from durable import Workflow, current_run

STEPS = 3
STEP_SECONDS = 0.08
LEASE_SECONDS = 2.0
"""Long enough that a loaded machine's heartbeat (every third of it) keeps a live owner's lease:
the test counts an attempt as executing until its process is killed or another attempt starts."""
CONCURRENCY = 2

wf = Workflow("queue-crash", default_retries=0, lease_seconds=LEASE_SECONDS)
wf.queue("llm", concurrency=CONCURRENCY)
wf.queue("clock")


def record(kind: str, run: str, *extra: object) -> None:
    ctx = current_run()
    token = ctx.lease.token if ctx is not None else -1
    fields = [kind, f"{time.time():.6f}", f"{time.monotonic():.6f}", str(os.getpid()), run, str(token)]
    line = " ".join([*fields, *map(str, extra)]) + "\n"
    fd = os.open(os.environ["QUEUE_CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@wf.task
async def effect(run: str, index: int) -> str:
    record("step", run, index)
    await asyncio.sleep(STEP_SECONDS)
    return f"{run}:{index}:{os.getpid()}"


@wf.workflow(id="job-{n}", queue="llm")
async def job(n: int) -> list[str]:
    run = f"job-{n}"
    record("start", run)
    results = [await effect(run, index) for index in range(STEPS)]
    record("end", run)
    return results


@wf.workflow(schedule="* * * * * *", queue="clock")  # every second: croniter's sixth field
async def tick(scheduled_at: datetime) -> str:
    ctx = current_run()
    assert ctx is not None
    record("start", ctx.run_id)
    result = await effect(ctx.run_id, 0)
    record("end", ctx.run_id)
    return result


async def main(argv: list[str]) -> None:
    command, url = argv[0], argv[1]
    if command != "start":
        raise SystemExit(f"unknown command {command!r}")
    wf.use_store(url)
    try:
        for n in range(int(argv[2])):
            await job.start(n=n)
    finally:
        await wf.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
