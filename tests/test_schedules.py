"""Schedules: ticks per croniter across Brussels' DST changes, deterministic ids, the catch-up
policy after downtime and ticks executed once by workers (under concurrent schedulers, each with
its own store object, on every store that declares Capability.QUEUES), the errors, and
``durable schedules``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from queue_stores import QUEUE_STORES, queue_store_url

from durable import ConfigurationError, Workflow
from durable._schedules import Schedule, Scheduler, tick_run_id
from durable.store import RunStatus
from durable.workflow import WorkflowFunction
from durable_memory import InMemoryStore

BRUSSELS = ZoneInfo("Europe/Brussels")


def utc(ticks: list[datetime]) -> list[str]:
    return [f"{t.astimezone(UTC):%m-%d %H:%M}" for t in ticks]


def day(year: int, month: int, d: int, hour: int = 12) -> float:
    """Noon (or ``hour``) of that day in Brussels, in epoch seconds."""
    return datetime(year, month, d, hour, tzinfo=BRUSSELS).timestamp()


def test_a_wall_time_skipped_by_spring_forward_fires_once_after_the_gap() -> None:
    # 2024-03-31 02:00 CET became 03:00 CEST: 02:30 did not exist that night.
    ticks = Schedule("30 2 * * *", "Europe/Brussels").ticks_after(day(2024, 3, 30), 3)
    assert [t.isoformat() for t in ticks] == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]
    three = Schedule("0 3 * * *", "Europe/Brussels").ticks_after(day(2024, 3, 30), 2)
    assert utc(three) == ["03-31 01:00", "04-01 01:00"]


def test_a_wall_time_repeated_by_fall_back_fires_once_per_offset() -> None:
    # 2024-10-27 03:00 CEST became 02:00 CET: 02:30 happened twice.
    ticks = Schedule("30 2 * * *", "Europe/Brussels").ticks_after(day(2024, 10, 26), 3)
    assert [t.isoformat() for t in ticks] == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-27T02:30:00+01:00",
        "2024-10-28T02:30:00+01:00",
    ]
    assert [t.fold for t in ticks] == [0, 1, 0]
    three = Schedule("0 3 * * *", "Europe/Brussels")
    assert utc(three.ticks_after(day(2024, 10, 26), 2)) == ["10-27 02:00", "10-28 02:00"]


def test_an_hourly_schedule_has_23_and_25_ticks_on_the_change_days() -> None:
    hourly = Schedule("0 * * * *", "Europe/Brussels")
    for (start, end), count in (
        ((day(2024, 3, 31, 0), day(2024, 4, 1, 0)), 23),
        ((day(2024, 10, 27, 0), day(2024, 10, 28, 0)), 25),
    ):
        ticks = hourly.ticks_between(start - 1, end - 1, at_most=100)
        assert len(ticks) == count and len({t.timestamp() for t in ticks}) == count


def test_tick_run_ids_name_the_utc_instant_or_fill_the_template() -> None:
    wf = Workflow("reports", db="memory://")

    @wf.workflow(schedule="30 2 * * *", timezone="Europe/Brussels")
    async def nightly(scheduled_at: datetime) -> None: ...

    @wf.workflow(id="digest-{scheduled_at:%Y%m%dT%H%M%z}", schedule="30 2 * * *", timezone="Europe/Brussels")
    async def digest(scheduled_at: datetime) -> None: ...

    assert nightly.schedule is not None
    twice = nightly.schedule.ticks_after(day(2024, 10, 26), 2)
    assert [tick_run_id(nightly, t) for t in twice] == [
        "nightly@2024-10-27T00:30:00Z",
        "nightly@2024-10-27T01:30:00Z",
    ]
    assert [tick_run_id(digest, t) for t in twice] == [
        "digest-20241027T0230+0200",
        "digest-20241027T0230+0100",
    ]


@pytest.fixture(params=QUEUE_STORES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store declaring Capability.QUEUES (tests/queue_stores.py), fresh."""
    yield from queue_store_url(request.param, tmp_path, "schedules")


def shared(db: str) -> InMemoryStore | str:
    """What several Workflows pass as ``db=`` to share one store: the memory store's object (its
    data is private to it), else the URL (each Workflow opens a store object of its own)."""
    return InMemoryStore() if db == "memory://" else db


def minutely_app(
    store: InMemoryStore | str, catch_up: int, queue: str | None
) -> tuple[Workflow, WorkflowFunction[Any, Any]]:
    """One process of an application with an every-minute schedule (on ``queue`` if given)."""
    wf = Workflow("reports", db=store)
    if queue is not None:
        wf.queue(queue)

    @wf.workflow(schedule="* * * * *", catch_up=catch_up, queue=queue)
    async def minutely(scheduled_at: datetime) -> None: ...

    return wf, minutely


@pytest.mark.parametrize(
    ("catch_up", "expected", "queue"),
    [(0, 0, None), (1, 1, None), (3, 3, None), (20, 10, None), (3, 3, "reports")],
)
async def test_after_downtime_the_latest_catch_up_missed_ticks_are_started_once(
    db: str, catch_up: int, expected: int, queue: str | None
) -> None:
    if datetime.now(UTC).second >= 55:  # keep the next minute's tick out of this test
        await asyncio.sleep(61 - datetime.now(UTC).second)
    store = shared(db)
    apps = [minutely_app(store, catch_up, queue) for _ in range(3)]  # three schedulers' processes
    wf, minutely = apps[0]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    await minutely(scheduled_at=now - timedelta(minutes=10))  # the last tick before the downtime
    stop = asyncio.Event()
    schedulers = [Scheduler([fn]) for _, fn in apps]
    running = [asyncio.ensure_future(s.run(stop)) for s in schedulers]
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*running)
    ticks = sorted(run.run_id for run in await wf.list_runs(workflow="minutely") if "@" in run.run_id)
    for app, _ in apps:
        await app.close()
    assert (
        ticks == [f"minutely@{now - timedelta(minutes=m):%Y-%m-%dT%H:%M:%SZ}" for m in range(expected)][::-1]
    )


async def test_a_workflow_that_never_ran_starts_at_its_next_tick(db: str) -> None:
    wf, minutely = minutely_app(db, 1, None)
    stop = asyncio.Event()
    task = asyncio.ensure_future(Scheduler([minutely]).run(stop))
    await asyncio.sleep(0.2)
    stop.set()
    await task
    assert await wf.list_runs(workflow="minutely") == []
    await wf.close()


@pytest.mark.parametrize("queue", [None, "clock"])
async def test_workers_execute_each_tick_once_with_its_time(db: str, queue: str | None) -> None:
    store = shared(db)
    seen: Counter[datetime] = Counter()
    apps = []
    for _ in range(3):  # three workers, each with its own Workflow (its own store object)
        app = Workflow("clock", db=store)
        if queue is not None:
            app.queue(queue)

        @app.workflow(schedule="* * * * * *", queue=queue)  # every second (croniter's sixth field)
        async def tick(scheduled_at: datetime) -> str:
            seen[scheduled_at] += 1
            return scheduled_at.isoformat()

        apps.append(app)
    wf = apps[0]
    stop = asyncio.Event()
    workers = [asyncio.ensure_future(app.run_worker(stop=stop, poll_interval=0.05)) for app in apps]
    await asyncio.sleep(2.6)
    # Stop half a second from the next tick, once every tick so far has completed.
    for _ in range(20):
        await asyncio.sleep((0.5 - time.time() % 1.0) % 1.0)
        runs = await wf.list_runs(workflow="tick")
        if all(run.status is RunStatus.COMPLETED for run in runs):
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*workers)
    runs = await wf.list_runs(workflow="tick")
    for app in apps:
        await app.close()
    assert 2 <= len(runs) <= 25 and all(run.status is RunStatus.COMPLETED for run in runs)
    assert set(seen.values()) == {1} and len(seen) == len(runs)
    assert all(t.microsecond == 0 and t.tzinfo is not None for t in seen)
    assert {run.run_id for run in runs} == {f"tick@{t:%Y-%m-%dT%H:%M:%SZ}" for t in seen}
    ticks = sorted(int(t.timestamp()) for t in seen)
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), "a tick was lost while workers ran"


def test_a_schedule_is_checked_where_it_is_declared() -> None:
    wf = Workflow("reports", db="memory://")
    for kwargs, message in (
        ({"schedule": "every night"}, "is not a valid cron expression"),
        ({"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, "not a known IANA time zone"),
        ({"schedule": "0 3 * * *", "catch_up": -1}, "catch_up must be an int from 0"),
    ):
        with pytest.raises(ConfigurationError, match=message):

            @wf.workflow(**kwargs)  # type: ignore[call-overload]
            async def report(scheduled_at: datetime) -> None: ...

    with pytest.raises(ConfigurationError, match=r"a parameter 'scheduled_at: datetime'; no_time.* has none"):

        @wf.workflow(schedule="0 3 * * *")
        async def no_time() -> None: ...

    with pytest.raises(ConfigurationError, match="give region a default"):

        @wf.workflow(schedule="0 3 * * *")
        async def needs_more(scheduled_at: datetime, region: str) -> None: ...


def test_without_croniter_a_schedule_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)
    wf = Workflow("reports", db="memory://")
    with pytest.raises(ConfigurationError, match=r"pip install 'durable-core\[cron\]'"):

        @wf.workflow(schedule="0 3 * * *")
        async def report(scheduled_at: datetime) -> None: ...


def test_durable_schedules_lists_the_next_fire_times(tmp_path: Path) -> None:
    (tmp_path / "sapp.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime
            from durable import Workflow
            wf = Workflow("reports", db="memory://")
            wf.queue("reports")

            @wf.workflow(schedule="0 3 * * *", timezone="Europe/Brussels", queue="reports")
            async def nightly_report(scheduled_at: datetime) -> None: ...
            """
        )
    )
    command = [sys.executable, "-c", "from durable.cli import main; main()", "schedules", "sapp:wf"]
    result = subprocess.run(
        [*command, "--json", "--count", "2"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["workflow"], row["schedule"], row["timezone"], row["queue"], row["catch_up"]) == (
        "nightly_report",
        "0 3 * * *",
        "Europe/Brussels",
        "reports",
        1,
    )
    first, second = (datetime.fromisoformat(t) for t in row["next"])
    assert (first.hour, first.minute, second - first) == (
        3,
        0,
        timedelta(days=1),
    ) or first.utcoffset() != second.utcoffset()
    assert row["run_ids"][0] == f"nightly_report@{first.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    table = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert table.returncode == 0 and "nightly_report" in table.stdout and "Europe/Brussels" in table.stdout
