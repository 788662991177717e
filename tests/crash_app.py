"""An application for the crash tests, run as separate processes.

    python crash_app.py worker STORE_URL LOG      # a worker until killed
    python crash_app.py start STORE_URL RUNS      # enqueue runs r-0 .. r-(RUNS-1)
    python crash_app.py signal STORE_URL RUN NAME # deliver a signal

Every execution of a step appends ``time pid run index`` to LOG before returning,
so the test can see each execution, including those whose checkpoint never committed.
Environment: ``CRASH_AT=run:index:when`` makes the process kill itself once at that
point (``when`` is ``effect``: after the side effect, before the checkpoint; or
``checkpoint``: after the checkpoint, before the next step); ``CRASH_MARKER`` is the
file that records it happened, so the replacement process does not crash again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from durable import Workflow, current_run

STEPS = 5
LEASE_SECONDS = 1.0


def build(url: str, log_path: str) -> Workflow:
    wf = Workflow("crash-app", db=url, default_retries=0, lease_seconds=LEASE_SECONDS)
    crash_at = os.environ.get("CRASH_AT", "")
    marker = os.environ.get("CRASH_MARKER", "")

    def maybe_crash(run: str, index: int, when: str) -> None:
        if crash_at == f"{run}:{index}:{when}" and marker and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    @wf.task
    async def effect(run: str, index: int) -> str:
        with open(log_path, "a") as log:
            log.write(f"{time.time():.6f} {os.getpid()} {run} {index}\n")
        await asyncio.sleep(0.01)
        maybe_crash(run, index, "effect")
        return f"{run}:{index}:{os.getpid()}"

    @wf.workflow(id="r-{n}")
    async def flow(n: int) -> list[str]:
        results = []
        for index in range(STEPS):
            results.append(await effect(f"r-{n}", index))
            maybe_crash(f"r-{n}", index, "checkpoint")
        return results

    @wf.workflow(id="sleeper-{n}")
    async def sleeper(n: int) -> float:
        await effect(f"sleeper-{n}", 0)
        await wf.sleep(1.5)
        return time.time()

    @wf.workflow(id="waiter-{n}")
    async def waiter(n: int) -> object:
        await effect(f"waiter-{n}", 0)
        ctx = current_run()
        assert ctx is not None
        return await wf.signal("go")

    @wf.workflow(id="slowpoke")
    async def slowpoke() -> list[str]:
        first = await effect("slowpoke", 0)
        await asyncio.sleep(2.5)  # the test pauses the process here, past its lease
        return [first, await effect("slowpoke", 1)]

    return wf


async def main(argv: list[str]) -> None:
    command, url = argv[0], argv[1]
    wf = build(url, argv[2] if command == "worker" else os.devnull)
    if command == "worker":
        print(f"worker {os.getpid()} ready", flush=True)
        await wf.run_worker(poll_interval=0.05, concurrency=8)
    elif command == "start":
        for n in range(int(argv[2])):
            await wf._workflows["flow"].start(n)
    elif command == "start-one":
        name, n = argv[2], int(argv[3])
        if name == "slowpoke":
            await wf._workflows[name].start()
        else:
            await wf._workflows[name].start(n)
    elif command == "signal":
        await wf.complete(argv[2], argv[3], {"from": os.getpid()})
    await wf.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
