"""Plain helpers shared by the core tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import asyncio
from typing import Any


class Calls:
    """Counts executions of task bodies by name."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def __call__(self, name: str) -> None:
        self.log.append(name)

    def count(self, name: str) -> int:
        return self.log.count(name)


class Crash(Exception):
    """Stands for a process dying in the middle of a run."""


async def until_status(wf: Any, run_id: str, status: Any, timeout: float = 10.0) -> Any:
    """Poll until the run has ``status`` (tests must not assume how fast a busy machine is)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        run = await wf.get_run(run_id)
        if run is not None and run.status is status:
            return run
        await asyncio.sleep(0.005)
    raise AssertionError(f"run {run_id!r} did not reach {status} within {timeout}s")
