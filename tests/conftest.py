from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from durable import Workflow
from durable.backoff import constant


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The core's semantics are checked on both default stores."""
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'wf.db'}"


@pytest.fixture
async def wf(store_url: str) -> AsyncIterator[Workflow]:
    workflow = Workflow("tests", db=store_url, default_retries=2, default_backoff=constant(0))
    yield workflow
    await workflow.close()


class Calls:
    """Counts executions of task bodies by name."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def __call__(self, name: str) -> None:
        self.log.append(name)

    def count(self, name: str) -> int:
        return self.log.count(name)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def crash_after() -> Callable[[int], Callable[[], None]]:
    """A switch that raises Crash on the n-th check, simulating a process dying mid-run."""

    def make(n: int) -> Callable[[], None]:
        seen = [0]

        def check() -> None:
            seen[0] += 1
            if seen[0] == n:
                raise Crash(f"simulated crash at check {n}")

        return check

    return make


class Crash(Exception):
    pass
