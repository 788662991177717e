"""A test run without a store's server says so once per backend, not once per skipped test."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

NEEDS_SERVERS = """
import pytest
from durable_contract_tests import server_url

@pytest.fixture(scope="session")
def alpha_url():
    return server_url("alpha", "alpha://127.0.0.1:1/0")

@pytest.mark.parametrize("n", range(5))
def test_needs_alpha(alpha_url, n):
    assert alpha_url == "alpha://here"

@pytest.mark.parametrize("n", range(3))
def test_needs_beta(n):
    server_url("beta", "beta://127.0.0.1:2/0")

def test_needs_nothing():
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    for name in ("DURABLE_TEST_STRICT", "DURABLE_TEST_ALPHA_URL", "DURABLE_TEST_BETA_URL"):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_servers=NEEDS_SERVERS)
    return pytester


def test_each_missing_server_is_one_summary_line_with_the_variable_to_set(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-ra")
    result.assert_outcomes(passed=1, skipped=8)
    result.stdout.fnmatch_lines(
        [
            "*= durable: test servers not found =*",
            "alpha: 5 tests skipped; set DURABLE_TEST_ALPHA_URL=alpha://127.0.0.1:1/0 to run them",
            "beta: 3 tests skipped; set DURABLE_TEST_BETA_URL=beta://127.0.0.1:2/0 to run them",
            "DURABLE_TEST_STRICT=1 turns these skips into failures (as CI runs).",
            "*= short test summary info =*",
            "SKIPPED [[]5] alpha: no server: set DURABLE_TEST_ALPHA_URL",
            "SKIPPED [[]3] beta: no server: set DURABLE_TEST_BETA_URL",
        ]
    )
    assert sum(line.startswith("SKIPPED") for line in result.outlines) == 2


def test_strict_mode_fails_every_test_that_lacks_its_server(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = project.runpytest_subprocess("-ra", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK  # skips alone leave the run green ...
    monkeypatch.setenv("DURABLE_TEST_STRICT", "1")  # ... strict mode does not
    result = project.runpytest_subprocess("-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=5, failed=3)
    result.stdout.fnmatch_lines(
        ["no alpha server: set DURABLE_TEST_ALPHA_URL=alpha://127.0.0.1:1/0; strict mode *"]
    )
    assert "test servers not found" not in result.stdout.str()


def test_a_server_that_is_set_runs_its_tests(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_TEST_ALPHA_URL", "alpha://here")
    result = project.runpytest_subprocess("-ra")
    result.assert_outcomes(passed=6, skipped=3)
    result.stdout.fnmatch_lines(["beta: 3 tests skipped; *"])
    assert "alpha:" not in result.stdout.str()
