"""``check_replay(store=URL)``: the replay reads the store it checks, also where the workflow body
itself asks its Workflow for the store (``wf.get_run``, ``wf.get_event``, ``wf.complete``), and
the Workflow's own store is neither opened nor created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from durable import RunStatus, Workflow


def shop(db: str) -> tuple[Workflow, Any, Any]:
    """One app whose workflow body reads another run's record through its Workflow."""
    wf = Workflow("shop", db=db, default_retries=0)

    @wf.task
    async def price(sku: str) -> int:
        return len(sku)

    @wf.workflow(id="catalog")
    async def catalog() -> str:
        return "v1"

    @wf.workflow(id="order-{n}")
    async def order(n: int) -> str:
        listed = await wf.get_run("catalog")  # not a step: read again by every execution
        if listed is None or listed.status is not RunStatus.COMPLETED:
            raise LookupError("no catalog")
        return f"{listed.result}:{await price('abc')}"

    return wf, catalog, order


async def test_check_replay_of_another_store_replays_against_that_store_only(tmp_path: Path) -> None:
    recorded = f"sqlite:///{tmp_path / 'recorded.db'}"
    production, catalog, order = shop(recorded)
    await catalog()
    assert await order(1) == '"v1":3'
    await production.close()
    before = (tmp_path / "recorded.db").read_bytes()

    app, _, _ = shop(f"sqlite:///{tmp_path / 'app.db'}")
    report = await app.check_replay(store=recorded, statuses=["completed"])
    assert [(r.run_id, r.compatible, r.outcome) for r in sorted(report.results, key=lambda r: r.run_id)] == [
        ("catalog", True, "completed"),
        ("order-1", True, "completed"),
    ], str(report)
    assert not (tmp_path / "app.db").exists()  # the app's own store: neither opened nor created
    assert (tmp_path / "recorded.db").read_bytes() == before
    await app.close()


async def test_a_write_the_body_makes_outside_a_step_is_refused_not_made_in_the_apps_store(
    tmp_path: Path,
) -> None:
    recorded = f"sqlite:///{tmp_path / 'recorded.db'}"

    def notifier(db: str) -> tuple[Workflow, Any]:
        wf = Workflow("notify", db=db, default_retries=0)

        @wf.workflow(id="notify")
        async def notify() -> bool:
            return await wf.complete("elsewhere", "ping", 1)  # not a step: made by every execution

        return wf, notify

    production, notify = notifier(recorded)
    assert await notify() is True
    await production.close()
    before = (tmp_path / "recorded.db").read_bytes()

    app, _ = notifier(f"sqlite:///{tmp_path / 'app.db'}")
    (result,) = (await app.check_replay(store=recorded, statuses=["completed"])).results
    assert not result.compatible and "WriteRefused" in result.message, result.message
    assert not (tmp_path / "app.db").exists()
    assert (tmp_path / "recorded.db").read_bytes() == before
    await app.close()
