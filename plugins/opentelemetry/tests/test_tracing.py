"""durable-opentelemetry: spans per run and step attempt, events, metrics; across processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from durable import RunStatus, Workflow
from durable.backoff import constant

from otel_kit import Telemetry

HERE = Path(__file__).parent


def tree(spans: list[ReadableSpan]) -> str:
    """The spans as an indented tree: name, then the attributes that tell attempts apart."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def show(span: ReadableSpan, depth: int) -> None:
        attributes = span.attributes or {}
        shown = [
            f"{name.removeprefix('durable.')}={attributes[name]}"
            for name in (
                "durable.run.attempt",
                "durable.step.attempt",
                "durable.run.status",
                "durable.step.status",
            )
            if name in attributes
        ]
        events = [event.name for event in span.events]
        line = "  " * depth + span.name + (f" [{', '.join(shown)}]" if shown else "")
        lines.append(line + (f" events: {', '.join(events)}" if events else ""))
        for child in children.get(span.context.span_id, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        show(root, 0)
    return "\n".join(lines)


async def test_a_run_is_a_tree_of_attempt_spans_under_the_callers_span(otel: Telemetry) -> None:
    wf = Workflow("shop", db="memory://", default_backoff=constant(0))
    tries: list[int] = []

    @wf.task
    async def reserve() -> str:
        return "r"

    @wf.task(retries=2)
    def charge() -> str:  # a sync task: its thread sees the step's span as current
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("card network down")
        inner = trace.get_tracer("app").start_span("bank call")
        inner.end()
        return "c"

    @wf.workflow(id="ship-{order}")
    async def ship(order: str) -> str:
        return await reserve()

    @wf.workflow(id="order-{order}")
    async def checkout(order: str) -> str:
        await reserve()
        await charge()
        approved = await wf.signal("approval", timeout=30)
        return f"{approved}:{await ship(order)}"

    with trace.get_tracer("app").start_as_current_span("POST /orders"):
        running = asyncio.ensure_future(checkout("7"))
        while (run := await wf.get_run("order-7")) is None or run.status is not RunStatus.WAITING:
            await asyncio.sleep(0.005)
        await wf.complete("order-7", "approval", "yes")
        assert await running == "yes:r"

    text = tree(otel.finished())
    print(text)  # the README shows this tree
    assert text.splitlines() == [
        "POST /orders events: durable.signal",
        "  durable.run checkout [run.attempt=1, run.status=completed] events: durable.signal",
        "    durable.step reserve [step.attempt=1, step.status=completed]",
        "    durable.step charge [step.attempt=1, step.status=retried] events: durable.retry, exception",
        "    durable.step charge [step.attempt=2, step.status=completed]",
        "      bank call",
        "    durable.step durable:signal [step.attempt=1, step.status=completed]",
        "    durable.step durable:child [step.attempt=1, step.status=completed]",
        "      durable.run ship [run.attempt=1, run.status=completed]",
        "        durable.step reserve [step.attempt=1, step.status=completed]",
    ]
    spans = {(s.name, (s.attributes or {}).get("durable.step.attempt")): s for s in otel.finished()}
    failed = spans[("durable.step charge", 1)]
    assert failed.status.status_code is StatusCode.ERROR and "card network down" in (
        failed.status.description or ""
    )
    [retry] = [e for e in failed.events if e.name == "durable.retry"]
    assert (retry.attributes or {})["durable.step.attempt"] == 2
    run = spans[("durable.run checkout", None)]
    assert (run.attributes or {})["durable.run_id"] == "order-7"
    assert (run.attributes or {})["durable.workflow"] == "checkout"
    child = spans[("durable.run ship", None)]
    assert (child.attributes or {})["durable.run.parent_run_id"] == "order-7"
    assert len({s.context.trace_id for s in otel.finished()}) == 1


async def test_a_worker_traces_each_attempt_and_the_queue_wait(otel: Telemetry) -> None:
    wf = Workflow("queue", db="memory://")

    @wf.task
    async def before() -> None:
        pass

    @wf.task
    async def after() -> None:
        pass

    @wf.workflow(id="parks")
    async def parks() -> str:
        await before()
        got = await wf.signal("go")
        await after()
        return str(got)

    await parks.start()
    stop = asyncio.Event()
    working = asyncio.ensure_future(wf.run_worker(poll_interval=0.01, stop=stop))
    try:
        while (run := await wf.get_run("parks")) is None or run.status is not RunStatus.WAITING:
            await asyncio.sleep(0.005)
        await wf.complete("parks", "go", 1)
        assert await wf.wait_for("parks", timeout=10) == "1"
    finally:
        stop.set()
        await asyncio.wait_for(working, 10)
    runs = sorted(
        (s for s in otel.finished() if s.name == "durable.run parks"),
        key=lambda s: (s.attributes or {})["durable.run.attempt"],  # type: ignore[arg-type, return-value]
    )
    assert [
        ((s.attributes or {})["durable.run.status"], (s.attributes or {})["durable.run.resumed"])
        for s in runs
    ] == [
        ("waiting", False),
        ("completed", True),
    ]
    assert (runs[0].attributes or {})["durable.run.queue_wait"] >= 0  # type: ignore[operator]
    assert "durable.run.queue_wait" not in (runs[1].attributes or {})  # a woken run: not measured
    second = runs[1].context.span_id
    resumed_steps = [s.name for s in otel.finished() if s.parent is not None and s.parent.span_id == second]
    assert resumed_steps == ["durable.step durable:signal", "durable.step after"]  # before: replayed, no span
    assert otel.metric("durable.run.queue_wait", **{"durable.workflow": "parks"}) == 1


async def test_steps_retries_runs_and_signals_are_counted(otel: Telemetry) -> None:
    wf = Workflow("counted", db="memory://", default_backoff=constant(0))
    tries: list[int] = []

    @wf.task(name="counted-task", retries=3)
    async def flaky() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise ValueError("no")

    @wf.workflow(id="counted", name="counted-flow")
    async def flow() -> None:
        await flaky()

    before = otel.metric("durable.steps", **{"durable.step.task": "counted-task"})
    await flow()
    await wf.complete("elsewhere", "ping", None)
    assert otel.metric("durable.steps", **{"durable.step.task": "counted-task"}) - before == 1
    assert otel.metric("durable.step.retries", **{"durable.step.task": "counted-task"}) == 2
    assert otel.metric("durable.step.duration", **{"durable.step.task": "counted-task"}) == 3
    status = {"durable.workflow": "counted-flow", "durable.run.status": "completed"}
    assert otel.metric("durable.runs", **status) == 1
    assert otel.metric("durable.run.duration", **status) == 1
    assert otel.metric("durable.signals", **{"durable.signal.name": "ping"}) == 1


async def test_a_run_started_in_a_span_is_continued_by_the_worker_that_executes_it(otel: Telemetry) -> None:
    wf = Workflow("handoff", db="memory://")

    @wf.task
    async def deliver() -> int:
        return 1

    @wf.workflow(id="handoff")
    async def handoff() -> int:
        return await deliver()

    await wf.get_store()
    stop = asyncio.Event()
    working = asyncio.ensure_future(wf.run_worker(poll_interval=0.01, stop=stop))  # outside any span
    try:
        with trace.get_tracer("app").start_as_current_span("POST /handoff") as request:
            await handoff.start()
        assert await wf.wait_for("handoff", timeout=10) == 1
    finally:
        stop.set()
        await asyncio.wait_for(working, 10)
    run = await wf.get_run("handoff")
    assert run is not None and run.context is not None
    trace_id = request.get_span_context().trace_id
    assert json.loads(run.context)["traceparent"].split("-")[1] == f"{trace_id:032x}"
    assert tree(otel.finished()).splitlines() == [
        "POST /handoff",
        "  durable.run handoff [run.attempt=1, run.status=completed]",
        "    durable.step deliver [step.attempt=1, step.status=completed]",
    ]
    assert {s.context.trace_id for s in otel.finished()} == {trace_id}


async def test_a_fork_made_in_a_span_is_executed_in_that_trace(otel: Telemetry) -> None:
    wf = Workflow("forks", db="memory://")

    @wf.task
    async def step(n: int) -> int:
        return n

    @wf.workflow(id="orig")
    async def orig() -> int:
        return await step(1) + await step(2)

    assert await orig() == 3
    otel.spans.clear()
    with trace.get_tracer("app").start_as_current_span("POST /runs/orig/fork") as request:
        fork_id = await wf.fork("orig", from_step="step#1")
    stop = asyncio.Event()
    working = asyncio.ensure_future(wf.run_worker(poll_interval=0.01, stop=stop))
    try:
        assert await wf.wait_for(fork_id, timeout=10) == 3
    finally:
        stop.set()
        await asyncio.wait_for(working, 10)
    assert tree(otel.finished()).splitlines() == [
        "POST /runs/orig/fork",
        "  durable.run orig [run.attempt=2, run.status=completed]",
        "    durable.step step [step.attempt=1, step.status=completed]",
    ]
    assert {s.context.trace_id for s in otel.finished()} == {request.get_span_context().trace_id}


async def test_a_run_started_outside_any_span_stores_no_context(otel: Telemetry) -> None:
    wf = Workflow("untraced", db="memory://")

    @wf.workflow(id="untraced")
    async def untraced() -> int:
        return 1

    await untraced.start()
    run = await wf.get_run("untraced")
    assert run is not None and run.context is None
    await wf.close()


def test_creating_a_workflow_does_not_import_opentelemetry_until_a_hook_is_called() -> None:
    code = (
        "import asyncio, sys\n"
        "from durable import Workflow\n"
        "wf = Workflow('x', db='memory://')\n"
        "@wf.workflow(id='r')\n"
        "async def r() -> int:\n"
        "    return 1\n"
        "print('opentelemetry' in sys.modules, 'durable_opentelemetry' in sys.modules)\n"
        "asyncio.run(r())\n"
        "print('opentelemetry' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True"]


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_a_run_that_dies_in_one_process_is_traced_as_a_second_attempt_in_another(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OTEL_APP_STORE": f"sqlite:///{tmp_path / 'app.db'}",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    app = str(HERE / "otel_app.py")
    dead, alive = tmp_path / "dead.jsonl", tmp_path / "alive.jsonl"
    died = subprocess.run(
        [sys.executable, app, "call", str(dead)],
        env={**env, "OTEL_APP_DIE": "1"},
        capture_output=True,
        text=True,
    )
    assert died.returncode == 17, died.stderr
    resumed = subprocess.run(
        [sys.executable, app, "resume", str(alive)], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0 and resumed.stdout.strip() == "3", resumed.stderr

    # The dying process exported what ended before it died: the first step, nothing else.
    assert [(s["name"], s["attributes"]["durable.step.status"]) for s in _spans(dead)] == [
        ("durable.step first", "completed")
    ]
    # The other process: attempt 2, resumed, only the step that had not been checkpointed.
    by_name = {s["name"]: s for s in _spans(alive)}
    assert sorted(by_name) == ["durable.run job", "durable.step second"]
    run = by_name["durable.run job"]["attributes"]
    assert (run["durable.run.attempt"], run["durable.run.resumed"], run["durable.run.status"]) == (
        2,
        True,
        "completed",
    )
    step = by_name["durable.step second"]
    assert step["parent_id"] == by_name["durable.run job"]["context"]["span_id"]
    assert step["context"]["trace_id"] == by_name["durable.run job"]["context"]["trace_id"]


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store two processes share: a SQLite file, or an isolated Postgres schema or Redis
    key prefix (``isolated_stores.isolated_url``, dropped after)."""
    from isolated_stores import isolated_url

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    with isolated_url(request.param, "otel") as url:
        yield url


@pytest.mark.slow
def test_a_worker_in_another_process_continues_the_trace_of_the_handler_that_started_the_run(
    tmp_path: Path, shared_store: str
) -> None:
    env = {
        **os.environ,
        "OTEL_APP_STORE": shared_store,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    app = str(HERE / "otel_app.py")
    handler, worker = tmp_path / "handler.jsonl", tmp_path / "worker.jsonl"
    started = subprocess.run(
        [sys.executable, app, "start", str(handler)], env=env, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    worked = subprocess.run(
        [sys.executable, app, "work", str(worker)], env=env, capture_output=True, text=True
    )
    assert worked.returncode == 0 and worked.stdout.strip() == "3", worked.stderr

    [request] = _spans(handler)  # the handler only started the run: its span is all it made
    assert request["name"] == "POST /jobs"
    by_name = {s["name"]: s for s in _spans(worker)}
    assert sorted(by_name) == ["durable.run job", "durable.step first", "durable.step second"]
    run = by_name["durable.run job"]
    assert run["parent_id"] == request["context"]["span_id"]
    assert {s["context"]["trace_id"] for s in by_name.values()} == {request["context"]["trace_id"]}
    for step in ("durable.step first", "durable.step second"):
        assert by_name[step]["parent_id"] == run["context"]["span_id"]


def test_durable_plugins_lists_the_plugin_and_its_hooks() -> None:
    durable = Path(sys.executable).with_name("durable")
    listed = subprocess.run([str(durable), "plugins", "--json"], capture_output=True, text=True, check=True)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert set(plugins["durable-opentelemetry"]["hooks"]) == {
        "durable_run_context",
        "durable_run_started",
        "durable_run_finished",
        "durable_step_started",
        "durable_step_retried",
        "durable_step_finished",
        "durable_signal_delivered",
    }
