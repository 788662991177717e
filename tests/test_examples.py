"""Every example runs offline as a user would run it, and shows what it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
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


def test_the_readmes_pydantic_ai_snippet_says_what_to_install_and_runs(tmp_path: Path) -> None:
    """The extra brings no model provider: the README says which to add, and the snippet runs
    as written with the model the extra does bring (``test``) in place of the ``openai:`` one."""
    pytest.importorskip("pydantic_ai")
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme.split("## Durable pydantic-ai agents", 1)[1].split("\n## ", 1)[0]
    assert "pip install 'python-durable[pydantic-ai]' 'pydantic-ai-slim[openai]'" in section
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count('Agent("openai:') == 1
    body = textwrap.indent(re.sub(r'Agent\("openai:[^"]+"', 'Agent("test"', code), "    ")
    script = tmp_path / "snippet.py"
    script.write_text(
        f"import asyncio\n\n\nasync def main():\n{body}    print(result.output)\n\n\nasyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "success (no tool calls)\n"


def test_flow_control_examples_keep_their_limits_offline(tmp_path: Path) -> None:
    llm = run_example("flow_control/llm_queue.py", tmp_path)
    assert "first done: summary of document urgent" in llm
    assert "10 summaries" in llm
    assert "at most 3 at once (concurrency=3); at most 4 started in any second (rate_limit=4/s)" in llm
    tenants = run_example("flow_control/tenant_queue.py", tmp_path)
    assert "finished in order: a-0, b-0, a-1, a-2, a-3, a-4, a-5" in tenants
    nightly = run_example("flow_control/nightly_schedule.py", tmp_path)
    assert re.search(r"caught up: nightly_report@\S+Z -> report for the night of \d{4}-\d\d-\d\d", nightly)
    assert "runs of nightly_report: 2; the workers executed it for ['" in nightly
    assert nightly.count("T03:00:00+0") == 4  # three next fire times and the night caught up, at 03:00 local


def test_streaming_agent_example_resumes_the_reply_exactly_once_after_a_killed_worker(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="the streaming example needs starlette and uvicorn")
    pytest.importorskip("pydantic_ai")
    out = run_example("streaming_agent", tmp_path)
    assert "first worker killed (exit code -9) mid-reply; the client had offsets 0..4" in out
    assert "the client reconnects with Last-Event-ID: 4" in out
    assert "  5: part_delta 'en: a '" in out and "end of stream: run completed" in out
    assert "26 events, 23 of them tokens, each received once" in out
