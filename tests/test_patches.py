"""wf.patched and wf.deprecate_patch (issue 19): a patch is taken by new runs and by runs that reach
it after the deploy, and skipped by runs the old code already took past it, in either order of
deploy; each run keeps the branch it took on every later replay."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from durable import Workflow
from durable.errors import ConfigurationError, NondeterminismError
from durable.store import RunStatus

from helpers import Calls, until_status


def shop(url: str, calls: Calls, *, patched: bool, deprecated: bool = False) -> tuple[Workflow, Any]:
    """One release of a checkout: version 1 (no patch), version 2 (``patched``: tax behind
    ``wf.patched("tax")``) or version 3 (``deprecated``: the old branch deleted)."""
    wf = Workflow("shop", db=url, default_retries=0)

    @wf.task
    async def reserve(order: str) -> str:
        calls(f"reserve {order}")
        return f"shelf-{order}"

    @wf.task
    async def charge(order: str, cents: int) -> int:
        calls(f"charge {order} {cents}")
        return cents

    @wf.workflow(id="order-{order}")
    async def checkout(order: str, cents: int, approve_first: bool) -> int:
        await reserve(order)
        if approve_first:
            await wf.signal("approval")
        if deprecated:
            wf.deprecate_patch("tax")
            charged = await charge(order, cents + cents // 5)
        elif patched and await wf.patched("tax"):
            charged = await charge(order, cents + cents // 5)
        else:
            charged = await charge(order, cents)
        await wf.signal("shipped")
        return charged

    return wf, checkout


async def work_until(wf: Workflow, run_id: str, status: RunStatus) -> None:
    """Let a worker of ``wf`` execute until the run reaches ``status`` (a parked wait)."""
    stop = asyncio.Event()
    worker = asyncio.create_task(wf.worker(poll_interval=0.01).run(stop))
    try:
        await until_status(wf, run_id, status)
    finally:
        stop.set()
        await worker


def keys(steps: list[Any]) -> list[str]:
    return [s.key for s in steps]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


async def test_a_new_run_takes_the_patch_records_it_and_keeps_it_on_replay(url: str) -> None:
    calls = Calls()
    v2, checkout = shop(url, calls, patched=True)
    async with v2:
        run_id = await checkout.start("1", 100, False)
        await work_until(v2, run_id, RunStatus.WAITING)
        assert calls.log == ["reserve 1", "charge 1 120"]
        assert keys(await v2.get_steps(run_id)) == ["reserve", "durable:patch@tax", "charge"]
        await v2.complete(run_id, "shipped")
        assert await v2.resume(run_id) == 120
        assert calls.log == ["reserve 1", "charge 1 120"]  # replayed, new branch again: nothing re-ran


async def test_deploy_after_the_run_passed_the_patch_point_keeps_the_old_branch(url: str) -> None:
    """Order one: version 1 charged the run before version 2 was deployed."""
    calls = Calls()
    v1, checkout1 = shop(url, calls, patched=False)
    async with v1:
        run_id = await checkout1.start("1", 100, False)
        await work_until(v1, run_id, RunStatus.WAITING)  # charged 100, waits to be shipped
        await v1.complete(run_id, "shipped")
    assert calls.log == ["reserve 1", "charge 1 100"]

    v2, _ = shop(url, calls, patched=True)
    async with v2:
        assert await v2.resume(run_id) == 100  # the old branch: its recorded charge replays
        steps = keys(await v2.get_steps(run_id))
    assert calls.log == ["reserve 1", "charge 1 100"]
    assert "durable:patch@tax" not in steps


async def test_deploy_before_the_run_reached_the_patch_point_takes_the_new_branch(url: str) -> None:
    """Order two: version 1 started the run, version 2 was deployed before it reached the charge."""
    calls = Calls()
    v1, checkout1 = shop(url, calls, patched=False)
    async with v1:
        run_id = await checkout1.start("2", 100, True)
        await work_until(v1, run_id, RunStatus.WAITING)  # waits for approval, before the charge
        await v1.complete(run_id, "approval")
    assert calls.log == ["reserve 2"]

    v2, _ = shop(url, calls, patched=True)
    async with v2:
        await work_until(v2, run_id, RunStatus.WAITING)  # now waits to be shipped
        await v2.complete(run_id, "shipped")
        assert await v2.resume(run_id) == 120
        steps = keys(await v2.get_steps(run_id))
    assert calls.log == ["reserve 2", "charge 2 120"]
    assert steps == [
        "reserve", "durable:signal@approval", "durable:patch@tax", "charge", "durable:signal@shipped",
    ]  # fmt: skip


async def test_a_run_that_took_the_patch_replays_after_the_patch_is_deprecated(url: str) -> None:
    calls = Calls()
    v2, checkout = shop(url, calls, patched=True)
    async with v2:
        new = await checkout.start("3", 100, False)
        await work_until(v2, new, RunStatus.WAITING)
        await v2.complete(new, "shipped")
    v1, checkout1 = shop(url, calls, patched=False)
    async with v1:
        old = await checkout1.start("4", 100, False)
        await work_until(v1, old, RunStatus.WAITING)
    assert calls.log == ["reserve 3", "charge 3 120", "reserve 4", "charge 4 100"]

    v3, _ = shop(url, calls, patched=False, deprecated=True)
    async with v3:
        report = await v3.check_replay()
        assert [(r.run_id, r.compatible) for r in sorted(report.results, key=lambda r: r.run_id)] == [
            ("order-3", True),
            ("order-4", False),  # the old branch's run: deprecating is not safe while it is in flight
        ]
        assert await v3.resume(new) == 120
        with pytest.raises(NondeterminismError, match="'charge'"):
            await v3.resume(old)
    assert calls.log == ["reserve 3", "charge 3 120", "reserve 4", "charge 4 100"]


async def test_patched_needs_a_run_and_a_name(url: str) -> None:
    calls = Calls()
    wf, _ = shop(url, calls, patched=True)
    with pytest.raises(ConfigurationError, match="inside a workflow run"):
        await wf.patched("tax")

    @wf.workflow(id="bad")
    async def bad() -> bool:
        return await wf.patched("")

    async with wf:
        with pytest.raises(ConfigurationError, match=r"run 'bad'.*non-empty str"):
            await bad()
