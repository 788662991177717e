"""The pytest plugin of the contract suite (entry point ``pytest11``).

Loaded by every pytest run where the package is installed, so it imports only pytest and
the standard library here; durable and the stores are imported when a contract test needs them.

Options: ``--durable-store NAME`` (repeatable) chooses the installed backends that
``pytest --pyargs durable_contract_tests`` runs over (all of them by default);
``--durable-strict`` (or ``DURABLE_TEST_STRICT=1``) fails, instead of skipping, a backend
whose server cannot be found.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import pytest

from durable_contract_tests import _servers
from durable_contract_tests._servers import missing_server

if TYPE_CHECKING:
    from durable_contract_tests._backends import BackendTarget

STRICT_ENV = "DURABLE_TEST_STRICT"
_overrides_key = pytest.StashKey[dict[str, dict[str, str]]]()
_missing_key = pytest.StashKey[dict[str, _servers.BackendSkips]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("durable", "durable store contract suite")
    group.addoption(
        "--durable-store",
        action="append",
        default=[],
        metavar="NAME",
        help="run the contract suite over this installed store backend (repeatable; default: all)",
    )
    group.addoption(
        "--durable-strict",
        action="store_true",
        default=False,
        help=f"fail instead of skipping when a store's test server is unavailable (also {STRICT_ENV}=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "durable_requires(*capabilities): skip unless the store declares these capabilities"
    )
    config.stash[_overrides_key] = {}
    config.stash[_missing_key] = {}
    if config.getoption("--durable-store"):
        selected_backends(config)  # a misspelt name is a usage error before anything runs


def is_strict(config: pytest.Config) -> bool:
    env = os.environ.get(STRICT_ENV, "").strip().lower()
    return bool(config.getoption("--durable-strict")) or env in ("1", "true", "yes", "on")


def selected_backends(config: pytest.Config) -> list[str]:
    from durable_contract_tests._backends import installed_backends

    installed = installed_backends()
    chosen: list[str] = list(dict.fromkeys(config.getoption("--durable-store")))
    unknown = [name for name in chosen if name not in installed]
    if unknown:
        raise pytest.UsageError(
            f"--durable-store {', '.join(unknown)}: no such store backend is installed; "
            f"installed: {', '.join(sorted(installed)) or 'none'}"
        )
    return chosen or sorted(installed)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "durable_backend_name" in metafunc.fixturenames:
        names = selected_backends(metafunc.config)
        metafunc.parametrize("durable_backend_name", names, ids=names, scope="session")


@pytest.fixture(scope="session")
def durable_backend(durable_backend_name: str, pytestconfig: pytest.Config) -> Iterator[BackendTarget]:
    """The installed backend under test, with its server found (or started) for the session."""
    from durable_contract_tests._backends import BackendUnavailable, backend_target

    try:
        with backend_target(durable_backend_name) as target:
            yield target
            return
    except BackendUnavailable as exc:
        strict = is_strict(pytestconfig)
        missing_server(exc.backend, exc.variable, exc.example, exc.detail, strict=strict)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    base = sys.modules.get("durable_contract_tests._base")
    if base is None:  # no contract class was imported: nothing to report
        return
    seen = config.stash[_overrides_key]
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is None or not issubclass(cls, base.ContractBase):
            continue
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name not in seen:
            seen[name] = base.overridden_tests(cls)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, _servers.ServerMissing):
        _servers.fold(report, call.excinfo.value, item.config.stash[_missing_key])
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    # Runs before pytest's short summary (-ra), whose skip lines this one explains.
    _servers.summarize(terminalreporter, config.stash.get(_missing_key, {}))
    overridden = {cls: tests for cls, tests in config.stash.get(_overrides_key, {}).items() if tests}
    if not overridden:
        return
    terminalreporter.section("durable contract tests replaced on purpose")
    for cls, tests in sorted(overridden.items()):
        for test, reason in sorted(tests.items()):
            terminalreporter.write_line(f"{cls}.{test}: {reason}")
