"""``durable_run_context``: headers plugins give when a run is created are stored with it
(``RunRecord.context``) and handed back to ``durable_run_started`` wherever it executes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from durable import Workflow, hookimpl
from durable._plugins import get_plugin_manager
from durable.cli import cli
from durable.store import RunRecord


class Headers:
    def __init__(self, headers: dict[str, str] | None, fail: bool = False) -> None:
        self.headers = headers
        self.fail = fail
        self.asked: list[tuple[str, str]] = []
        self.started: list[str | None] = []

    @hookimpl
    def durable_run_context(self, workflow: str, run_id: str) -> dict[str, str] | None:
        self.asked.append((workflow, run_id))
        if self.fail:
            raise RuntimeError("tracer broken")
        return self.headers

    @hookimpl
    def durable_run_started(
        self, workflow: str, run_id: str, resumed: bool, attempt: int, run: RunRecord
    ) -> None:
        self.started.append(run.context)


@pytest.fixture
def register() -> Iterator[Any]:
    manager = get_plugin_manager()
    added: list[str] = []

    def add(plugin: Headers, name: str) -> Headers:
        manager.register(plugin, name=name)
        added.append(name)
        return plugin

    yield add
    for name in added:
        manager.unregister(name)


def app() -> tuple[Workflow, Any]:
    wf = Workflow("ctx", db="memory://")

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return n

    return wf, job


async def test_headers_of_every_plugin_are_stored_with_the_run_and_given_back_when_it_executes(
    register: Any,
) -> None:
    first = register(Headers({"traceparent": "00-first-01", "shared": "first"}), "ctx-first")
    last = register(Headers({"baggage": "k=v", "shared": "last"}), "ctx-last")
    wf, job = app()
    await job.start(1)
    run = await wf.get_run("job-1")
    assert run is not None and run.context is not None
    assert json.loads(run.context) == {"traceparent": "00-first-01", "baggage": "k=v", "shared": "last"}
    assert first.asked == last.asked == [("job", "job-1")]
    assert await job(2) == 2  # a direct call: created and executed here
    assert last.started == [json.dumps({"baggage": "k=v", "shared": "last", "traceparent": "00-first-01"},
                                       separators=(",", ":"), sort_keys=True)]  # fmt: skip
    await wf.close()


async def test_a_failing_plugin_is_logged_and_the_run_created_with_the_others_headers(
    register: Any, caplog: pytest.LogCaptureFixture
) -> None:
    register(Headers({"traceparent": "00-ok-01"}), "ctx-ok")
    register(Headers(None, fail=True), "ctx-broken")
    wf, job = app()
    assert await job(3) == 3
    run = await wf.get_run("job-3")
    assert run is not None and json.loads(run.context or "") == {"traceparent": "00-ok-01"}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "durable hook durable_run_context failed"
    ]
    await wf.close()


async def test_no_headers_no_context_and_a_resume_keeps_the_stored_one(register: Any) -> None:
    plugin = register(Headers(None), "ctx-none")
    wf, job = app()
    await job.start(4)
    run = await wf.get_run("job-4")
    assert run is not None and run.context is None
    plugin.headers = {"traceparent": "00-later-01"}
    assert await wf.resume("job-4") == 4  # the run exists: its stored context stays
    run = await wf.get_run("job-4")
    assert run is not None and run.context is None
    assert plugin.started == [None]
    await wf.close()


def test_a_fork_made_by_the_cli_stores_the_plugins_headers(register: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ctx.db'}"

    async def record() -> None:
        wf = Workflow("ctx", db=url)

        @wf.task
        async def double(n: int) -> int:
            return 2 * n

        @wf.workflow(id="job-{n}")
        async def job(n: int) -> int:
            return await double(n)

        await job(5)
        await wf.close()

    async def forked_context() -> str | None:
        wf = Workflow("ctx", db=url)
        run = await wf.get_run("job-5.cli")
        await wf.close()
        assert run is not None
        return run.context

    asyncio.run(record())
    plugin = register(Headers({"traceparent": "00-cli-01"}), "ctx-cli")
    args = ["runs", "fork", "job-5", "--from-step", "double", "--new-run-id", "job-5.cli", "--store", url]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert plugin.asked == [("job", "job-5.cli")]
    assert json.loads(asyncio.run(forked_context()) or "") == {"traceparent": "00-cli-01"}
