"""A nightly schedule: one run per tick, however many workers run, and a missed night caught up.

    python examples/flow_control/nightly_schedule.py

``schedule="0 3 * * *"`` in Brussels time: every worker serving the workflow creates the tick's
run under the id ``nightly_report@<tick in UTC>``, so the store keeps one run per night. Here the
report ran two nights ago and no worker was up since: on start, a worker catches up the latest
missed night only (``catch_up=1``, the default), then waits for the next one. Offline, in memory.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from durable import Workflow

wf = Workflow("reports", db="memory://")
reported: list[str] = []


@wf.workflow(schedule="0 3 * * *", timezone="Europe/Brussels")
async def nightly_report(scheduled_at: datetime) -> str:
    reported.append(scheduled_at.isoformat())
    return f"report for the night of {scheduled_at:%Y-%m-%d}"


async def main() -> None:
    schedule = nightly_report.schedule
    assert schedule is not None
    last, missed = schedule.ticks_between(time.time() - 3 * 86400, time.time(), at_most=2)
    await nightly_report(scheduled_at=last)  # the last night a worker was up for (run directly)
    reported.clear()
    print(f"next fire times: {', '.join(t.isoformat() for t in schedule.ticks_after(time.time(), 3))}")
    stop = asyncio.Event()
    workers = [asyncio.ensure_future(wf.run_worker(stop=stop)) for _ in range(3)]  # three workers
    run_id = f"nightly_report@{missed.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    while await wf.get_run(run_id) is None:  # noqa: ASYNC110 (the workers create it as they start)
        await asyncio.sleep(0.01)
    print(f"caught up: {run_id} -> {await wf.wait_for(run_id, timeout=30)}")
    stop.set()
    await asyncio.gather(*workers)
    runs = await wf.list_runs(workflow="nightly_report")
    print(f"runs of nightly_report: {len(runs)}; the workers executed it for {reported}")


if __name__ == "__main__":
    asyncio.run(main())
