"""The pydantic-ai examples run offline as documented: ``python examples/<file>.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _run(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_agent_example_shows_crash_and_resume() -> None:
    out = _run("pydantic_ai_agent.py")
    assert "first process killed (exit code -9)" in out
    resumed = out.split("second process (same run id) made only:")[1]
    assert "model request 1" not in resumed and "model request 2" not in resumed
    assert "tool weather(Rome)" in resumed and "tool weather(Paris)" not in resumed
    assert "model requests in total: 4" in out


@pytest.mark.slow
def test_patterns_example() -> None:
    out = _run("pydantic_ai_patterns.py")
    assert "model calls on replay: 0" in out
    assert "2 attempts, 1 checkpoint" in out
    assert "web_search ran 1 time(s)" in out
    assert "searches made: 2" in out
    assert "Done: refunded 30 EUR" in out


@pytest.mark.slow
def test_worker_example_finishes_a_killed_workers_run() -> None:
    out = _run("pydantic_ai_worker.py")
    assert "first worker killed (exit code -9)" in out
    first, second = out.split("second worker made only:")
    assert first.count("model request") == 2 and "tool order(B-2)" in first
    resumed = second.split("output:")[0]
    assert "deps_factory('orders-42', {'customer': 'acme'})" in resumed
    assert "model request 1" not in resumed and "model request 2" not in resumed
    assert "tool order(A-1)" not in resumed and "tool order(B-2)" in resumed
    assert "output: Report(customer='acme', orders=['acme:A-1', 'acme:B-2', 'acme:C-3'])" in out
    assert "model requests in total: 4 (none made twice)" in out
