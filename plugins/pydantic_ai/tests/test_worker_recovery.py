"""A `durable worker` killed (SIGKILL) in the middle of an agent run, and another worker finishing
it (issue 22, "done means"): the run has deps (rebuilt by ``deps_factory``), a per-run output type
and usage limits; the second worker finishes it with the same output type, within the limits,
without repeating a model request the first one finished. Counts come from a log both workers
append to (``worker_app``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import worker_app
from pydantic_ai.usage import UsageLimits
from worker_app import Deps, Report

HERE = Path(__file__).parent
DURABLE = Path(sys.executable).with_name("durable")


def _stores() -> list[str]:
    stores = ["sqlite"]
    if os.environ.get("DURABLE_TEST_POSTGRES_URL"):
        stores.append("postgres")
    return stores


@pytest.fixture(params=_stores())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'workers.db'}"
        return
    # A schema of its own: nothing another session left behind is due for these workers.
    base = os.environ["DURABLE_TEST_POSTGRES_URL"]
    schema = f"pai_workers_{uuid.uuid4().hex[:12]}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"

    async def drop() -> None:
        import asyncpg

        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _worker(store: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(DURABLE), "worker", "worker_app:wf", "--store", store, "--poll", "0.05"],
        cwd=HERE,
        env={**os.environ, "PYTHONPATH": str(HERE), **env},
        stderr=subprocess.PIPE,
        text=True,
    )


def _entries(log: Path, run_id: str) -> list[tuple[str, str, int]]:
    """(kind, value, pid) of every logged event of run ``run_id``."""
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [(kind, value, pid) for rid, kind, value, pid in rows if rid == run_id]


@pytest.mark.slow
def test_a_killed_workers_agent_run_is_finished_by_another_worker(
    store: str, tmp_path: Path, run_prefix: str
) -> None:
    log = tmp_path / "calls.log"
    env = {"PAI_WORKER_LOG": str(log)}
    os.environ["PAI_WORKER_LOG"] = str(log)  # for this process's own deps_factory, if it ran one
    run_id = f"{run_prefix}-support"
    limits = UsageLimits(request_limit=4, tool_calls_limit=3)

    async def start() -> None:
        async with worker_app.workflow(store) as wf:
            await worker_app.build(wf).start(
                "list the customer's items",
                run_id=run_id,
                deps=Deps("acme"),
                output_type=Report,
                usage_limits=limits,
            )

    asyncio.run(start())

    first = _worker(store, {**env, "PAI_WORKER_HANG": "item-1"})
    ready = Path(f"{log}.ready")
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first worker never reached the second lookup"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)  # in the middle of the run: two model requests done
    first.wait()
    assert [(kind, value) for kind, value, _ in _entries(log, run_id)] == [
        ("deps", '{"customer": "acme"}'),
        ("model", "0"),
        ("tool", "item-0"),
        ("model", "1"),
        ("tool", "item-1"),
    ]

    second = _worker(store, env)

    async def wait() -> object:
        async with worker_app.workflow(store) as wf:
            return await worker_app.build(wf).wait_for(run_id, timeout=90)

    try:
        result = asyncio.run(wait())
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr

    assert isinstance(result.output, Report), "the same output type as the caller asked for"  # type: ignore[attr-defined]
    assert result.output == Report(customer="acme", items=["acme:item-0", "acme:item-1", "acme:item-2"])  # type: ignore[attr-defined]
    usage = result.usage  # type: ignore[attr-defined]
    assert (usage.requests, usage.tool_calls) == (4, 3)
    assert usage.requests <= limits.request_limit and usage.tool_calls <= limits.tool_calls_limit  # type: ignore[operator]

    events = _entries(log, run_id)
    model_requests = [(value, pid) for kind, value, pid in events if kind == "model"]
    assert [value for value, _ in model_requests] == ["0", "1", "2", "3"], (
        "no finished model request repeated"
    )
    assert [pid for _, pid in model_requests] == [first.pid, first.pid, second.pid, second.pid]
    lookups = [value for kind, value, _ in events if kind == "tool"]
    # Only the lookup the kill interrupted runs again.
    assert lookups == ["item-0", "item-1", "item-1", "item-2"]
    # Each worker rebuilt the deps from what the caller recorded; the live object never was stored.
    assert [(value, pid) for kind, value, pid in events if kind == "deps"] == [
        ('{"customer": "acme"}', first.pid),
        ('{"customer": "acme"}', second.pid),
    ]
