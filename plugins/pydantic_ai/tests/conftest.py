from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from pydantic_ai import models

from durable import Workflow
from durable.backoff import constant

sys.path.insert(0, str(Path(__file__).parent))

# Offline only: a test that reaches a real provider fails instead of calling it.
models.ALLOW_MODEL_REQUESTS = False


def _store_params() -> list[str]:
    params = ["memory", "sqlite"]
    if os.environ.get("DURABLE_TEST_POSTGRES_URL") and importlib.util.find_spec("durable_postgres"):
        params.append("postgres")
    if os.environ.get("DURABLE_TEST_REDIS_URL") and importlib.util.find_spec("durable_redis"):
        params.append("redis")
    return params


def url_for(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'agent.db'}"
    return os.environ[f"DURABLE_TEST_{kind.upper()}_URL"]


@pytest.fixture(params=_store_params())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request.param, tmp_path)


@pytest.fixture(params=[p for p in _store_params() if p != "memory"])
def persistent_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Stores another process can open (for the subprocess crash tests)."""
    return url_for(request.param, tmp_path)


@pytest.fixture
def run_prefix(request: pytest.FixtureRequest) -> str:
    """Run ids unique per test, so shared servers (postgres, redis) never see one twice."""
    import uuid

    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def wf(store_url: str) -> AsyncIterator[Workflow]:
    workflow = Workflow("pai-tests", db=store_url, default_retries=2, default_backoff=constant(0))
    yield workflow
    await workflow.close()


@pytest.fixture
async def reopen(wf: Workflow, store_url: str) -> AsyncIterator[Callable[[], Awaitable[Workflow]]]:
    """Another Workflow on ``wf``'s store, as a restarted process has: a Workflow serves one agent per
    name, so a test that builds an agent again (a second process) builds it on one of these."""
    opened: list[Workflow] = []

    async def make() -> Workflow:
        db = await wf.get_store() if store_url == "memory://" else store_url  # memory:// is per object
        workflow = Workflow("pai-tests", db=db, default_retries=2, default_backoff=constant(0))
        opened.append(workflow)
        return workflow

    yield make
    for workflow in opened:
        await workflow.close()
