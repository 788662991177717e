from __future__ import annotations

import asyncio
import shutil
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


@pytest.fixture(scope="module")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store holding the runs of ``test_cli.populate`` (built once per module)."""
    from test_cli import populate

    path = tmp_path_factory.mktemp("shop") / "shop.db"
    asyncio.run(populate(f"sqlite:///{path}"))
    return path


@pytest.fixture
def shop_db(shop_template: Path, tmp_path: Path) -> Path:
    """A private copy of the populated store, so tests may change it."""
    path = tmp_path / "shop.db"
    shutil.copy(shop_template, path)
    return path
