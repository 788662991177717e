"""Every example runs offline as a user would run it, and shows what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from durable_contract_tests import server_url

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, cwd: Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_quickstart_crashes_then_resumes_running_only_the_remaining_step(tmp_path: Path) -> None:
    out = run_example("quickstart.py", tmp_path)
    first, second = out.split("Second run")
    assert "fetch_data: GET" in first and "killed" in first and "save_result: inserting" not in first
    assert "fetch_data: GET" not in second  # replayed from SQLite, not executed
    assert "save_result: inserting" in second
    assert "is completed; checkpoints: fetch_data, save_result" in second
    assert (tmp_path / "quickstart.db").exists()


def test_in_memory_example_replays_without_executing(tmp_path: Path) -> None:
    out = run_example("in_memory.py", tmp_path)
    assert "first call: [0, 2, 4] executed: ['double(0)', 'double(1)', 'double(2)']" in out
    assert "second call: [0, 2, 4] executed: nothing (stored result)" in out


def test_order_approval_web_handler_delivers_the_signal_once(tmp_path: Path) -> None:
    out = run_example("order_approval.py", tmp_path)
    assert "order-42 is waiting for manager-approval" in out
    assert "result: shipped | log: ['prepared 42', 'shipped 42']" in out
    assert 'a second click is ignored: {"delivered": false}' in out


def test_redis_example_runs_unchanged_against_a_real_server(tmp_path: Path) -> None:
    url = server_url("redis", "redis://127.0.0.1:6379/0")
    pytest.importorskip("durable_redis", reason="install durable-redis (pip install 'python-durable[redis]')")
    out = run_example("redis_example.py", tmp_path, DURABLE_REDIS_URL=url)
    assert "charged 300 executed: ['reserve_stock', 'charge_card']" in out
    assert "charged 300 executed: nothing (replayed)" in out
    assert "status: completed" in out
