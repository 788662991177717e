"""Observer hooks: a logging or tracing plugin sees runs, steps, retries and signals."""

from __future__ import annotations

from typing import Any

import pytest

from durable import Workflow, hookimpl
from durable._plugins import get_plugin_manager
from durable.backoff import constant


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @hookimpl
    def durable_run_started(self, workflow: str, run_id: str, resumed: bool) -> None:
        self.events.append(("run_started", workflow, run_id, resumed))

    @hookimpl
    def durable_run_finished(
        self, workflow: str, run_id: str, status: str, error: BaseException | None
    ) -> None:
        self.events.append(("run_finished", run_id, status, type(error).__name__ if error else None))

    @hookimpl
    def durable_step_started(self, run_id: str, key: str, task: str, attempt: int) -> None:
        self.events.append(("step_started", key, attempt))

    @hookimpl
    def durable_step_retried(
        self, run_id: str, key: str, task: str, attempt: int, error: BaseException, delay: float
    ) -> None:
        self.events.append(("step_retried", key, attempt, str(error), delay))

    @hookimpl
    def durable_step_finished(
        self, run_id: str, key: str, task: str, attempts: int, error: BaseException | None
    ) -> None:
        self.events.append(("step_finished", key, attempts, error is not None))

    @hookimpl
    def durable_signal_delivered(self, run_id: str, name: str, delivery_id: str, recorded: bool) -> None:
        self.events.append(("signal_delivered", run_id, name, recorded))


@pytest.fixture
def recorder() -> Any:
    manager = get_plugin_manager()
    plugin = Recorder()
    manager.register(plugin, name="test-recorder")
    yield plugin
    manager.pm.unregister(plugin)
    manager._observed = None


async def test_observers_see_runs_steps_retries_and_signals(recorder: Recorder) -> None:
    wf = Workflow("observed", db="memory://", default_backoff=constant(0.5))
    attempts = {"n": 0}

    @wf.task(retries=2)
    async def flaky() -> str:
        attempts["n"] += 1
        if attempts["n"] < 2:
            raise OSError("blip")
        return "ok"

    @wf.workflow(id="obs")
    async def flow() -> str:
        return await flaky()

    await flow()
    await wf.complete("obs", "late", 1)
    await flow()  # completed: returns the stored result, no new events but none missing
    assert recorder.events == [
        ("run_started", "flow", "obs", False),
        ("step_started", "flaky", 1),
        ("step_retried", "flaky", 1, "blip", 0.5),
        ("step_started", "flaky", 2),
        ("step_finished", "flaky", 2, False),
        ("run_finished", "obs", "completed", None),
        ("signal_delivered", "obs", "late", True),
    ]


async def test_a_failing_observer_is_logged_and_the_next_one_still_called(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @hookimpl
        def durable_step_started(self, run_id: str, key: str, task: str, attempt: int) -> None:
            raise RuntimeError("observer bug")

    manager = get_plugin_manager()
    manager.register(Broken(), name="test-broken")  # registered last: called first
    try:
        wf = Workflow("observed", db="memory://")

        @wf.task
        async def step() -> int:
            return 1

        @wf.workflow(id="isolated")
        async def flow() -> int:
            return await step()

        assert await flow() == 1
    finally:
        manager.unregister("test-broken")
    assert ("step_started", "step", 1) in recorder.events
    assert "durable observer hook durable_step_started failed" in caplog.text
