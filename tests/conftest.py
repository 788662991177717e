from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from durable import Workflow
from durable.backoff import constant

from helpers import Calls


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The core's semantics are checked on both default stores."""
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'wf.db'}"


@pytest.fixture
async def wf(store_url: str) -> AsyncIterator[Workflow]:
    workflow = Workflow("tests", db=store_url, default_retries=2, default_backoff=constant(0))
    yield workflow
    await workflow.close()


@pytest.fixture
def calls() -> Calls:
    return Calls()
