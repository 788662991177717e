"""Schedules: ``@wf.workflow(schedule="0 3 * * *", timezone="Europe/Brussels")``.

Each tick is one run, started like ``fn.start(scheduled_at=tick)`` (on the workflow's queue if it
has one) under an id made from the tick: ``{workflow}@{tick in UTC}`` (``nightly@2024-03-31T01:00:00Z``),
or the workflow's ``id`` template filled with ``scheduled_at``. However many workers see a tick,
the store creates its run once (run-id idempotency: no lock, no leader).

Every worker serving the workflow's queue runs a ``Scheduler``. Missed ticks (no worker was up)
follow ``catch_up``: when a scheduler starts, it looks up the latest tick already started (the
newest run of the workflow and its ``scheduled_at``); of the ticks since then, it starts the
latest ``catch_up`` (default 1: one run however long the downtime; 0: none), oldest first. A
workflow that never ran starts at its next tick. Cron expressions, time zones and daylight-saving
transitions follow croniter (``durable-core[cron]``), imported only when a schedule is declared:
a wall time skipped by a spring-forward fires at the first instant after the gap, and one a
fall-back repeats fires twice, once per offset.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from durable import _clock, _codec, _queues
from durable._records import RunQuery
from durable.errors import ConfigurationError, DurableError, RunConflictError

if TYPE_CHECKING:
    from durable.store import Store
    from durable.workflow import WorkflowFunction

__all__ = ["PARAMETER", "Schedule", "Scheduler", "make_schedule", "tick_run_id"]

log = logging.getLogger("durable.schedules")

PARAMETER = "scheduled_at"
"""The parameter a scheduled workflow receives its tick's time in (an aware ``datetime``)."""
INSTALL_HINT = "pip install 'durable-core[cron]' (python-durable includes it)"
MAX_CATCH_UP = 1000
RETRY_SECONDS = 1.0
"""How long a scheduler waits before starting a tick again after the store failed to take it."""


def _croniter() -> Any:
    try:
        from croniter import croniter  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigurationError(f"schedules need croniter, which is not installed: {INSTALL_HINT}") from None
    return croniter


@dataclass(frozen=True)
class Schedule:
    """A cron schedule in a time zone (``schedule=``, ``timezone=``, ``catch_up=``)."""

    cron: str
    timezone: str = "UTC"
    catch_up: int = 1

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def ticks_after(self, after: float, count: int) -> list[datetime]:
        """The next ``count`` ticks strictly after ``after`` (epoch seconds), in the schedule's zone."""
        zone = self.zone
        it = _croniter()(self.cron, datetime.fromtimestamp(after, zone))
        ticks: list[datetime] = []
        while len(ticks) < count:
            tick = self._canonical(it.get_next(datetime), zone)
            if tick.timestamp() > after:
                ticks.append(tick)
        return ticks

    def ticks_between(self, after: float, until: float, *, at_most: int) -> list[datetime]:
        """The latest ``at_most`` ticks in ``(after, until]`` (epoch seconds), oldest first."""
        if at_most <= 0 or until <= after:
            return []
        zone = self.zone
        # croniter's start is exclusive: start a hair after ``until`` so a tick at it is found.
        it = _croniter()(self.cron, datetime.fromtimestamp(until + 1e-3, zone))
        found: list[datetime] = []
        while len(found) < at_most:
            tick = self._canonical(it.get_prev(datetime), zone)
            if tick.timestamp() <= after:
                break
            if tick.timestamp() <= until:
                found.append(tick)
        return found[::-1]

    @staticmethod
    def _canonical(tick: datetime, zone: ZoneInfo) -> datetime:
        # One instant, one value: rebuilt from its timestamp, so the fold of a repeated wall time is
        # right and every scheduler passes (and digests) the same datetime.
        return datetime.fromtimestamp(tick.timestamp(), zone)


def make_schedule(
    wfn: WorkflowFunction[Any, Any], cron: str | None, timezone: str | None, catch_up: int
) -> Schedule:
    """Check ``@wf.workflow(schedule=..., timezone=..., catch_up=...)`` of ``wfn``."""
    where = f"@workflow {wfn.name!r}"
    if not isinstance(cron, str) or not cron.strip():
        raise ConfigurationError(
            f"{where}: schedule must be a cron expression like '0 3 * * *', got {cron!r}"
        )
    croniter = _croniter()
    if not croniter.is_valid(cron):
        raise ConfigurationError(f"{where}: schedule {cron!r} is not a valid cron expression")
    zone = "UTC" if timezone is None else timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"{where}: timezone {zone!r} is not a known IANA time zone (like 'Europe/Brussels')"
        ) from None
    if not isinstance(catch_up, int) or isinstance(catch_up, bool) or not 0 <= catch_up <= MAX_CATCH_UP:
        raise ConfigurationError(
            f"{where}: catch_up must be an int from 0 to {MAX_CATCH_UP}, got {catch_up!r}"
        )
    parameters = wfn.signature.parameters
    if PARAMETER not in parameters:
        raise ConfigurationError(
            f"{where}: a scheduled workflow takes its tick's time as a parameter "
            f"'{PARAMETER}: datetime'; {wfn.name}{wfn.signature} has none"
        )
    others = [
        name
        for name, p in parameters.items()
        if name != PARAMETER
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if others:
        raise ConfigurationError(
            f"{where}: a scheduled workflow is started with '{PARAMETER}' alone; give "
            f"{', '.join(others)} a default"
        )
    return Schedule(cron.strip(), zone, catch_up)


def tick_run_id(wfn: WorkflowFunction[Any, Any], tick: datetime) -> str:
    """The run id of ``wfn``'s tick at ``tick``: the same in every process."""
    if wfn.id_template is None:
        return f"{wfn.name}@{tick.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return wfn._run_id(wfn._bind((), {PARAMETER: tick}))


async def start_tick(wfn: WorkflowFunction[Any, Any], tick: datetime) -> str:
    """Start the run of one tick (a no-op if it exists): as ``fn.start(scheduled_at=tick)``."""
    arguments = wfn._bind((), {PARAMETER: tick})
    return await _queues.start_with_id(wfn, tick_run_id(wfn, tick), arguments, None)


async def last_tick(store: Store, wfn: WorkflowFunction[Any, Any]) -> float | None:
    """When the latest started tick of ``wfn`` was (its newest run's ``scheduled_at``), or ``None``."""
    for run in await store.list_runs(RunQuery(workflow=wfn.name, limit=1)):
        try:
            value = _codec.loads(run.inputs).get(PARAMETER)
        except (DurableError, ValueError, TypeError, AttributeError):
            return None
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.timestamp()
    return None


class Scheduler:
    """Starts the tick runs of ``workflows``' schedules until stopped (a worker runs one)."""

    def __init__(self, workflows: Iterable[WorkflowFunction[Any, Any]]) -> None:
        self.workflows = [wfn for wfn in workflows if wfn.schedule is not None]
        self.started: list[str] = []
        """Run ids of the ticks this scheduler started (or found started), in order."""

    async def run(self, stop: asyncio.Event) -> None:
        if not self.workflows:
            return
        store = await self.workflows[0].workflow.get_store()
        now = _clock.now()
        checked: dict[str, float] = {}
        for wfn in self.workflows:
            assert wfn.schedule is not None
            last = await last_tick(store, wfn)
            checked[wfn.name] = now
            if last is not None:
                await self._start(wfn, wfn.schedule.ticks_between(last, now, at_most=wfn.schedule.catch_up))
        while not stop.is_set():
            upcoming = {
                wfn.name: wfn.schedule.ticks_after(checked[wfn.name], 1)[0].timestamp()
                for wfn in self.workflows
                if wfn.schedule is not None
            }
            when = min(upcoming.values())
            _clock.expect(when)
            sleeper = asyncio.ensure_future(_clock.sleep(max(0.0, when - _clock.now())))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait([sleeper, stopper], return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                stopper.cancel()
            if stop.is_set():
                return
            now = _clock.now()
            for wfn in self.workflows:
                schedule = wfn.schedule
                assert schedule is not None
                if upcoming[wfn.name] > now:
                    continue
                # Normally one tick; more if this process was suspended past several.
                ticks = schedule.ticks_between(checked[wfn.name], now, at_most=max(1, schedule.catch_up))
                if await self._start(wfn, ticks):
                    checked[wfn.name] = now
                else:  # the store is out: the same ticks again in a moment
                    await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=RETRY_SECONDS)

    async def _start(self, wfn: WorkflowFunction[Any, Any], ticks: list[datetime]) -> bool:
        """Start each tick's run; ``False`` if one could not be (the store failed): try again."""
        for tick in ticks:
            try:
                self.started.append(await start_tick(wfn, tick))
            except RunConflictError as exc:  # not transient: another run holds the tick's id
                log.warning("schedule of %r: tick %s not started: %s", wfn.name, tick.isoformat(), exc)
            except (DurableError, OSError) as exc:
                log.warning(
                    "schedule of %r: could not start its tick %s: %s", wfn.name, tick.isoformat(), exc
                )
                return False
        return True
