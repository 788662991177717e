"""The suite's own machinery: the override guard, capability skips, backend selection, strict mode."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def inner_ini(pytester: pytest.Pytester) -> None:
    # The inner runs' own configuration, as a store's project would set it (pytest-asyncio warns
    # when the loop scope of async fixtures is left to its changing default).
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


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
