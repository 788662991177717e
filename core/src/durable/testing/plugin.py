"""The pytest plugin of ``durable.testing`` (entry point ``pytest11``, shipped with durable-core).

Fixtures: ``durable_wf`` (a ``Workflow`` on a fresh store, closed after the test),
``durable_store_url`` (that store's URL, for an application's own ``Workflow``:
``app.wf.use_store(durable_store_url)``) and ``durable_clock`` (the test runs in
``virtual_time()``). Option ``--durable-store`` (repeatable): the stores ``durable_wf`` runs on, a
URL or an installed backend's name (``memory``, the default; ``sqlite``; a server's backend reads
its base URL from ``DURABLE_TEST_<NAME>_URL``); a test using the fixture runs once per store. The
contract suite (durable-contract-tests) reads the same option, as backend names.

Async fixtures need an async test runner: pytest-asyncio (its fixture decorator is used when it is
installed) or anyio's plugin.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from durable import Workflow
    from durable.testing import VirtualClock

OPTION = "--durable-store"
CONTRACT_PLUGIN = "durable_contract_tests"

F = TypeVar("F", bound=Callable[..., Any])

try:
    import pytest_asyncio

    _fixture: Any = pytest_asyncio.fixture
except ImportError:  # anyio's plugin runs plain async fixtures
    _fixture = pytest.fixture


def _async_fixture(fn: F) -> F:
    return cast(F, _fixture(fn))


def _contract_suite_adds_option(pluginmanager: pytest.PytestPluginManager) -> bool:
    """The contract suite declares ``--durable-store`` too: one declaration, whichever loads first."""
    if pluginmanager.has_plugin(CONTRACT_PLUGIN) or pluginmanager.is_blocked(CONTRACT_PLUGIN):
        return pluginmanager.has_plugin(CONTRACT_PLUGIN)
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.name == CONTRACT_PLUGIN for ep in entry_points(group="pytest11"))


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if _contract_suite_adds_option(pluginmanager):
        return
    parser.getgroup("durable").addoption(
        OPTION,
        action="append",
        default=[],
        metavar="URL_OR_NAME",
        help="store the durable_wf fixture uses: a URL or an installed backend's name (repeatable; "
        "default: memory)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "durable_store_url" not in metafunc.fixturenames:
        return
    chosen = list(dict.fromkeys(_chosen(metafunc.config))) or ["memory"]
    metafunc.parametrize("durable_store", chosen, ids=[_id(s) for s in chosen], scope="function")


def _chosen(config: pytest.Config) -> list[str]:
    try:
        return list(config.getoption(OPTION) or [])
    except ValueError:  # not declared (the contract suite is installed but was not loaded)
        return []


def _id(store: str) -> str:
    return store.split("://", 1)[0] if "://" in store else store


@pytest.fixture
def durable_store(request: pytest.FixtureRequest) -> str:
    """The ``--durable-store`` value this test runs on (``memory`` unless told)."""
    return str(getattr(request, "param", "memory"))


@_async_fixture
async def durable_store_url(durable_store: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of a store holding nothing yet, deleted after the test where its backend can."""
    from durable._plugins import get_plugin_manager

    plugins = get_plugin_manager()
    if "://" in durable_store:
        base = durable_store
    elif durable_store == "memory":
        base = "memory://"
    elif durable_store == "sqlite":
        base = f"sqlite:///{tmp_path / 'durable.db'}"
    else:
        try:
            backend = plugins.backend_named(durable_store)
        except Exception as exc:
            raise pytest.UsageError(f"{OPTION} {durable_store}: {exc}") from None
        variable = "DURABLE_TEST_" + "".join(c if c.isalnum() else "_" for c in backend.name.upper()) + "_URL"
        base = os.environ.get(variable, "")
        if not base:
            raise pytest.UsageError(
                f"{OPTION} {durable_store}: set {variable} to the URL of a {durable_store} server to test on"
            )
    scheme = base.split("://", 1)[0].lower()
    found = plugins.backends().get(scheme)
    owner = found[0] if found is not None else None
    url = base
    if owner is not None and owner.isolated_url is not None and owner.drop_isolated is not None:
        # A server's store: a schema or key prefix of its own, dropped after the test.
        url = owner.isolated_url(base, f"durabletest{secrets.token_hex(4)}")
    try:
        yield url
    finally:
        if url != base and owner is not None and owner.drop_isolated is not None:
            await owner.drop_isolated(url)


@_async_fixture
async def durable_wf(durable_store_url: str) -> AsyncIterator[Workflow]:
    """A ``Workflow`` named ``tests`` on a fresh store (``--durable-store``), closed after the test."""
    from durable import Workflow

    workflow = Workflow("tests", db=durable_store_url)
    try:
        yield workflow
    finally:
        await workflow.close()


@_async_fixture
async def durable_clock() -> AsyncIterator[VirtualClock]:
    """The test runs in ``durable.testing.virtual_time()``; this is its clock."""
    from durable.testing import virtual_time

    async with virtual_time() as clock:
        yield clock
