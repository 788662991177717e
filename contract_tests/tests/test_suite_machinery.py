"""The suite's own machinery: the override guard, capability skips, backend selection, strict mode,
the per-test time limit, where a serverless backend's test stores go."""

from __future__ import annotations

import os
import re
import tempfile
import time

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_limit_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    # The inner runs are configured by each test alone. (They get no ini: the plugin itself sets
    # what pytest-asyncio needs, as a store project's run, which sets nothing, would get it.)
    monkeypatch.delenv("DURABLE_TEST_TIMEOUT", raising=False)


MEMORY_FACTORY = """
import pytest
from durable_memory import InMemoryStore
from durable_contract_tests import StoreContract, override_contract

class TestMine(StoreContract):
    @pytest.fixture
    def store_factory(self):
        return lambda same_data_as=None: InMemoryStore()
"""


def test_a_silently_overridden_contract_test_fails_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        MEMORY_FACTORY
        + """
    async def test_a_completed_step_is_never_overwritten(self, store):
        pass
"""
    )
    result = pytester.runpytest("-k", "never_overwritten")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ContractOverrideError*test_a_completed_step_is_never_overwritten*"])


def test_a_contract_test_disabled_by_assignment_fails_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MEMORY_FACTORY + "    test_waiting_times_out_with_none = None\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*replaces contract member(s) test_waiting_times_out_with_none*"])


def test_an_override_with_a_reason_runs_and_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        MEMORY_FACTORY
        + """
    @override_contract("checked by our own slower test")
    async def test_a_completed_step_is_never_overwritten(self, store):
        assert store is not None
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "never_overwritten")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*replaced on purpose*", "*never_overwritten: checked by our own slower test"]
    )


def test_override_contract_requires_a_reason() -> None:
    from durable_contract_tests import override_contract

    with pytest.raises(TypeError, match="reason"):
        override_contract("  ")


def test_tests_for_a_missing_capability_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MEMORY_FACTORY)
    result = pytester.runpytest("-rs", "-k", "reopened_store_keeps_runs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*InMemoryStore does not declare the persistent capability*"])


def test_an_unknown_store_name_is_a_usage_error_listing_the_installed_ones(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--pyargs", "durable_contract_tests", "--durable-store", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--durable-store nope: no such store backend is installed; installed: *memory*"]
    )


def _unreachable_backend(pytester: pytest.Pytester) -> None:
    # A backend whose test server cannot start, as on a machine without Docker.
    pytester.makeconftest(
        """
import pytest
from durable._plugins import get_plugin_manager
from durable.hookspecs import StoreBackend, hookimpl
from durable_memory import InMemoryStore

def no_docker():
    raise RuntimeError("Error while fetching server API version (no Docker daemon)")

class Plugin:
    @hookimpl
    def durable_store_backends(self):
        return [StoreBackend("phantom", ("phantom",), "test", InMemoryStore, test_server=no_docker)]

get_plugin_manager().register(Plugin(), name="phantom-plugin")
"""
    )


def test_a_backend_without_a_server_skips_with_how_to_enable_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DURABLE_TEST_STRICT", raising=False)
    monkeypatch.delenv("DURABLE_TEST_PHANTOM_URL", raising=False)
    _unreachable_backend(pytester)
    result = pytester.runpytest_subprocess(
        "-rs", "--pyargs", "durable_contract_tests", "--durable-store", "phantom", "-k", "round_trip"
    )
    result.stdout.fnmatch_lines(
        [
            "*durable: test servers not found*",
            "phantom: * skipped; set DURABLE_TEST_PHANTOM_URL=phantom://... to run them",
            "  its test_server() could not start one either: RuntimeError: *no Docker*",
            "*short test summary*",
            "SKIPPED ?*? phantom: no server: set DURABLE_TEST_PHANTOM_URL",
        ]
    )
    assert result.parseoutcomes().get("skipped", 0) > 0 and "passed" not in result.parseoutcomes()


@pytest.mark.parametrize("how", ["option", "env"])
def test_strict_mode_fails_instead_of_skipping(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.delenv("DURABLE_TEST_PHANTOM_URL", raising=False)
    _unreachable_backend(pytester)
    args = ["--pyargs", "durable_contract_tests", "--durable-store", "phantom", "-k", "round_trip"]
    if how == "option":
        monkeypatch.delenv("DURABLE_TEST_STRICT", raising=False)
        args.append("--durable-strict")
    else:
        monkeypatch.setenv("DURABLE_TEST_STRICT", "1")
    result = pytester.runpytest_subprocess(*args)
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) > 0 and "skipped" not in outcomes
    result.stdout.fnmatch_lines(["*strict mode*"])


def test_a_store_authors_run_prints_no_pytest_asyncio_deprecation_warning(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MEMORY_FACTORY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "round_trips_exactly")
    assert result.parseoutcomes().get("passed", 0) > 0
    output = result.stdout.str() + result.stderr.str()
    assert '"asyncio_default_fixture_loop_scope" is unset' not in output
    assert "PytestDeprecationWarning" not in output


BLOCKING_STORE = """
import time
import pytest
from durable_memory import InMemoryStore
from durable_contract_tests import StoreContract

class LoopBlocker(InMemoryStore):
    async def create_run(self, run):
        time.sleep(3600)  # a synchronous call in an async method: the event loop stops
        return await super().create_run(run)

class TestBlocked(StoreContract):
    @pytest.fixture
    def store_factory(self):
        return lambda same_data_as=None: LoopBlocker()

def test_a_slow_test_of_the_project_is_not_limited():
    time.sleep(2.5)
"""


def test_a_contract_test_that_blocks_the_event_loop_fails_at_the_time_limit_with_the_stacks(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(BLOCKING_STORE)
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--durable-timeout", "2", "-k",
        "created_run_is_read_back_field_for_field or slow_test_of_the_project", timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_a_created_run_is_read_back_field_for_field was still running (call) after the durable "
            "contract suite's time limit of 2 s per test*",
            "*--- main thread (most recent call last):*",
        ]
    )
    assert "time.sleep(3600)" in result.stdout.str()  # where it blocked
    assert elapsed < 30, f"the blocked run took {elapsed:.0f} s"


@pytest.mark.parametrize(
    ("where", "value"),
    [("option", "1.5"), ("env", "1.5"), ("ini", "1.5")],
)
def test_the_time_limit_is_set_by_option_environment_or_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str, value: str
) -> None:
    pytester.makepyfile(BLOCKING_STORE)
    args = ["-p", "no:cacheprovider", "-k", "created_run_is_read_back_field_for_field"]
    if where == "option":
        args += ["--durable-timeout", value]
    elif where == "env":
        monkeypatch.setenv("DURABLE_TEST_TIMEOUT", value)
    else:
        pytester.makeini(f"[pytest]\ndurable_timeout = {value}\n")
    result = pytester.runpytest_subprocess(*args, timeout=60)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*time limit of {value} s per test*"])


def test_a_time_limit_that_is_not_a_number_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MEMORY_FACTORY)
    result = pytester.runpytest_subprocess("--durable-timeout", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--durable-timeout='soon': give the time limit in seconds (0: none)*"])


def test_a_backend_without_a_server_keeps_its_test_stores_in_a_temporary_directory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DURABLE_TEST_SCRATCHFILE_URL", raising=False)
    seen = pytester.path / "urls.txt"
    pytester.makeconftest(
        f"""
from durable._plugins import get_plugin_manager
from durable.hookspecs import StoreBackend, hookimpl
from durable_example_store import JsonFileStore

def isolated(base, token):
    with open({str(seen)!r}, "a") as log:
        log.write(base + "\\n")
    return base.rstrip("/") + "/" + token + ".json"

class Plugin:
    @hookimpl
    def durable_store_backends(self):
        # Like a file store written before the suite gave serverless backends a directory: no
        # test_server, only isolated_url.
        return [StoreBackend("scratchfile", ("scratchfile",), "test", JsonFileStore,
                             capabilities=JsonFileStore.capabilities, isolated_url=isolated)]

    @hookimpl
    def durable_store_from_url(self, url, options):
        return JsonFileStore.from_url(url) if url.startswith("scratchfile:") else None

get_plugin_manager().register(Plugin(), name="scratch-plugin")
"""
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pyargs", "durable_contract_tests", "--durable-store", "scratchfile",
        "-k", "created_run_is_read_back_field_for_field or two_fresh_stores_share_no_data",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    bases = set(seen.read_text().split())
    assert len(bases) == 1
    [base] = bases
    directory = re.sub("^scratchfile:///", "", base)
    assert directory.startswith(tempfile.gettempdir() + os.sep), base  # not the file system's root
    assert not os.path.exists(directory), "the temporary directory outlived the session"
