"""The README's quick start, runnable: it crashes on the first run and resumes on the second.

    python examples/quickstart.py            # both runs: a child process is killed mid-run, then resumed
    python examples/quickstart.py --crash    # just the first run: dies after fetching
    python examples/quickstart.py --resume   # just the second run: replays the fetch, saves, finishes

It uses the default store, an SQLite file (here quickstart.db in the current directory).
httpx and the database are stand-ins so the example needs no network.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from durable import Workflow
from durable.backoff import exponential

DB = Path("quickstart.db")
wf = Workflow("my-app", db=str(DB))
CRASH = "--crash" in sys.argv


class FakeResponse:
    def __init__(self, url: str) -> None:
        self.url = url

    def json(self) -> dict[str, object]:
        return {"source": self.url.rsplit("/", 1)[-1], "rows": [1, 2, 3]}


class httpx:
    class AsyncClient:
        async def __aenter__(self) -> httpx.AsyncClient:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        async def get(self, url: str) -> FakeResponse:
            print(f"  fetch_data: GET {url} (executing)")
            await asyncio.sleep(0.1)
            return FakeResponse(url)


class db:
    @staticmethod
    async def insert(data: dict[str, object]) -> None:
        print(f"  save_result: inserting {data} (executing)")


@wf.task(retries=3, backoff=exponential(base=2, max=60))
async def fetch_data(url: str) -> dict:  # type: ignore[type-arg]
    async with httpx.AsyncClient() as client:
        return (await client.get(url)).json()


@wf.task
async def save_result(data: dict) -> None:  # type: ignore[type-arg]
    if CRASH:
        print("  ...the process dies here, after fetch_data was checkpointed")
        os.kill(os.getpid(), signal.SIGKILL)
    await db.insert(data)


@wf.workflow(id="pipeline-{source}")
async def run_pipeline(source: str) -> None:
    data = await fetch_data(f"https://api.example.com/{source}")
    await save_result(data)


async def run_once() -> None:
    await run_pipeline(source="users")
    steps = await wf.get_steps("pipeline-users")
    run = await wf.get_run("pipeline-users")
    assert run is not None
    print(f"  run pipeline-users is {run.status.value}; checkpoints: {', '.join(s.key for s in steps)}")
    await wf.close()


def main() -> None:
    if CRASH or "--resume" in sys.argv:
        asyncio.run(run_once())
        return
    for path in DB.parent.glob(DB.name + "*"):
        path.unlink()
    print("First run (crashes mid-way):")
    first = subprocess.run([sys.executable, __file__, "--crash"], check=False)
    print(f"  process exited with {first.returncode} (killed)\n")
    print("Second run, same arguments (fetch_data replays from SQLite; only save_result executes):")
    asyncio.run(run_once())


if __name__ == "__main__":
    main()
