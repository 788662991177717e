"""The pytest plugin of the contract suite (entry point ``pytest11``).

Loaded by every pytest run where the package is installed, so it imports only pytest and
the standard library here; durable and the stores are imported when a contract test needs them.

Options: ``--durable-store NAME`` (repeatable) chooses the installed backends that
``pytest --pyargs durable_contract_tests`` runs over (all of them by default);
``--durable-strict`` (or ``DURABLE_TEST_STRICT=1``) fails, instead of skipping, a backend
whose server cannot be found; ``--durable-timeout SECONDS`` (or ``DURABLE_TEST_TIMEOUT``, or
``durable_timeout`` in the pytest configuration; default 60, 0 for none) is the hard limit of
each contract test (``_watchdog``). Contract tests only: the project's other tests are left alone.

It also sets pytest-asyncio's ``asyncio_default_fixture_loop_scope`` to ``function`` when the
project leaves it unset, so a store author's run prints no deprecation warning about it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import pytest

from durable_contract_tests import _servers, _watchdog
from durable_contract_tests._servers import missing_server

if TYPE_CHECKING:
    from durable_contract_tests._backends import BackendTarget

STRICT_ENV = "DURABLE_TEST_STRICT"
_overrides_key = pytest.StashKey[dict[str, dict[str, str]]]()
_missing_key = pytest.StashKey[dict[str, _servers.BackendSkips]]()
_watchdog_key = pytest.StashKey[_watchdog.Watchdog]()
_limit_key = pytest.StashKey[float]()
_started_key = pytest.StashKey[float]()
LOOP_SCOPE_INI = "asyncio_default_fixture_loop_scope"


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
    group.addoption(
        _watchdog.OPTION,
        dest="durable_timeout",
        default=None,
        metavar="SECONDS",
        help=f"hard time limit of each contract test, stacks dumped when it passes (default "
        f"{_watchdog.DEFAULT_LIMIT:g}; 0: none; also {_watchdog.ENV})",
    )
    parser.addini(
        _watchdog.INI,
        f"hard time limit of each contract test, seconds (default {_watchdog.DEFAULT_LIMIT:g}; 0: none)",
        default="",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    _default_loop_scope(config)
    config.stash[_limit_key] = _watchdog.limit_of(config)
    config.stash[_watchdog_key] = _watchdog.Watchdog(lambda: _stop_capturing(config))
    config.addinivalue_line(
        "markers", "durable_requires(*capabilities): skip unless the store declares these capabilities"
    )
    config.stash[_overrides_key] = {}
    config.stash[_missing_key] = {}
    if config.getoption("--durable-store"):
        selected_backends(config)  # a misspelt name is a usage error before anything runs


def _default_loop_scope(config: pytest.Config) -> None:
    """Give pytest-asyncio's fixture loop scope the value it will default to, unless the project
    set one: runs before pytest-asyncio reads it (``tryfirst``), so it warns about nothing."""
    try:
        if config.getini(LOOP_SCOPE_INI):
            return
    except ValueError:  # pytest-asyncio is not active in this run
        return
    cache = getattr(config, "_inicache", None)  # where getini keeps values; no public setter exists
    if isinstance(cache, dict):
        cache[LOOP_SCOPE_INI] = "function"


def _stop_capturing(config: pytest.Config) -> None:
    """Let the watchdog's last words reach the terminal before it ends the process."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    watchdog = config.stash.get(_watchdog_key, None)
    if watchdog is not None:
        watchdog.disarm()
        watchdog.uninstall()


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


def _is_contract_test(item: pytest.Item) -> bool:
    base = sys.modules.get("durable_contract_tests._base")
    cls = getattr(item, "cls", None)
    return base is not None and cls is not None and issubclass(cls, base.ContractBase)


def _watched(item: pytest.Item, phase: str) -> Generator[None, None, None]:
    """Run one phase of a contract test under the time limit: setup and body share one budget
    (from the start of setup), teardown has its own (so a test failed for its time still closes
    its stores, or fails again saying where that hangs)."""
    limit = item.config.stash[_limit_key]
    if limit <= 0 or not _is_contract_test(item):
        yield
        return
    now = time.monotonic()
    if phase == "setup":
        item.stash[_started_key] = now
    start = now if phase == "teardown" else item.stash.get(_started_key, now)
    watchdog = item.config.stash[_watchdog_key]
    watchdog.arm(item.nodeid, phase, start + limit, limit)
    try:
        yield
    finally:
        watchdog.disarm()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _watched(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _watched(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    return (yield from _watched(item, "teardown"))


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
