"""A queue's limits and a schedule's ticks while real ``durable worker`` processes are SIGKILLed
(issue 17, "Done means"): the application is ``queue_crash_app.py``, its side-effect log the
store-independent record of what executed, when, and in which process.

A run executes from its body's ``start`` line until its ``end`` line, or until its process was
killed (the test records when the kill returned: the process ran nothing after that), or until
the next attempt of the same run started (that attempt's claim means the lease of this one had
expired: from then on its owner no longer held the run's slot, whatever it was still doing).
Every attempt is closed one of these ways, or the test fails.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from queue_crash_app import CONCURRENCY, STEPS
from queue_stores import SHARED_QUEUE_STORES, queue_store_url

from durable import RunStatus, Workflow, _codec
from durable._records import RunRecord, StepRecord

HERE = Path(__file__).resolve().parent
APP = str(HERE / "queue_crash_app.py")
DURABLE = [sys.executable, "-c", "from durable.cli import main; main()"]
CATCH_UP = 1
"""The tick workflow's catch_up (the default: the latest missed tick)."""
pytestmark = pytest.mark.slow


@pytest.fixture(params=SHARED_QUEUE_STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from queue_store_url(request.param, tmp_path, "queue_crash")


@dataclass(frozen=True)
class Line:
    kind: str
    wall: float
    mono: float
    pid: int
    run: str
    token: int
    index: int | None


@dataclass
class Attempt:
    """One claim of a run, as its body logged it."""

    run: str
    token: int
    pid: int
    start: float
    end: float | None = None
    """The ``end`` line's monotonic time, or ``None`` if the body never returned."""
    steps: list[Line] | None = None


class Workers:
    """``durable worker queue_crash_app:wf --queue QUEUE`` processes sharing one store."""

    def __init__(self, url: str, tmp_path: Path, queue: str) -> None:
        self.url, self.tmp, self.queue = url, tmp_path, queue
        self.log = tmp_path / "effects.log"
        env = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
        self.env = {**env, "QUEUE_CRASH_LOG": str(self.log)}
        self.alive: list[subprocess.Popen[bytes]] = []
        self.killed: dict[int, tuple[float, float]] = {}
        """pid -> (wall, monotonic) time at which its SIGKILL had taken effect."""
        self.spawned = 0

    def start_runs(self, count: int) -> None:
        command = [sys.executable, APP, "start", self.url, str(count)]
        subprocess.run(command, env=self.env, cwd=HERE, check=True, timeout=60)

    def spawn(self) -> float:
        """Start a worker; returns the wall time at which it said it serves (store open)."""
        self.spawned += 1
        errors = self.tmp / f"worker-{self.spawned}.stderr"
        command = [*DURABLE, "worker", "queue_crash_app:wf", "--store", self.url, "--queue", self.queue]
        with errors.open("wb") as stderr:
            process = subprocess.Popen(
                [*command, "--poll", "0.1"], cwd=HERE, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + 60
        while "serving" not in errors.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=10)
                raise AssertionError(f"worker exited with {process.returncode}: {errors.read_text()[-3000:]}")
            time.sleep(0.01)
        self.alive.append(process)
        return time.time()

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.killed[process.pid] = (time.time(), time.monotonic())
        self.alive.remove(process)

    def kill_all(self) -> None:
        for process in list(self.alive):
            self.kill(process)

    def lines(self) -> list[Line]:
        if not self.log.exists():
            return []
        rows = []
        for text in self.log.read_text().splitlines():
            kind, wall, mono, pid, run, token, *index = text.split()
            step = int(index[0]) if index else None
            rows.append(Line(kind, float(wall), float(mono), int(pid), run, int(token), step))
        return rows

    def busy(self) -> list[subprocess.Popen[bytes]]:
        """Live workers whose log shows a run attempt begun and not ended."""
        attempts = collect_attempts(self.lines())
        pids = {a.pid for a in attempts.values() if a.end is None}
        return [p for p in self.alive if p.pid in pids]

    def all_ended(self, count: int) -> bool:
        return len({line.run for line in self.lines() if line.kind == "end"}) >= count

    def inspect(self, fn: Any) -> Any:
        async def go() -> Any:
            async with Workflow("queue-crash", db=self.url) as wf:
                return await fn(wf)

        return asyncio.run(go())

    def wait_until(self, predicate: Any, timeout: float = 45.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.inspect(predicate)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"condition not reached within {timeout}s")


@pytest.fixture
def workers_of(store_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Workers] = []

    def make(queue: str) -> Workers:
        made.append(Workers(store_url, tmp_path, queue))
        return made[-1]

    yield make
    for group in made:
        group.kill_all()


def collect_attempts(lines: list[Line]) -> dict[tuple[str, int], Attempt]:
    attempts: dict[tuple[str, int], Attempt] = {}
    for line in lines:
        key = (line.run, line.token)
        if line.kind == "start":
            assert key not in attempts, f"attempt {key} began twice"
            attempts[key] = Attempt(line.run, line.token, line.pid, line.mono, steps=[])
        elif line.kind == "step":
            assert attempts[key].steps is not None
            attempts[key].steps.append(line)  # type: ignore[union-attr]
        elif line.kind == "end":
            attempts[key].end = line.mono
    return attempts


def executing_spans(workers: Workers, attempts: dict[tuple[str, int], Attempt]) -> list[tuple[float, float]]:
    """When each attempt executed holding its lease (see the module's docstring)."""
    by_run: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in attempts.values():
        by_run[attempt.run].append(attempt)
    spans = []
    for run, tries in by_run.items():
        tries.sort(key=lambda a: a.token)
        for attempt, after in zip(tries, [*tries[1:], None], strict=True):
            ends = [attempt.end]
            if attempt.pid in workers.killed:
                ends.append(workers.killed[attempt.pid][1])
            if after is not None:
                ends.append(after.start)
            closed = [t for t in ends if t is not None]
            assert closed, f"{run} token {attempt.token} (pid {attempt.pid}): never ended, died or replaced"
            spans.append((attempt.start, min(closed)))
    return spans


def most_at_once(spans: list[tuple[float, float]]) -> int:
    # An end at the instant of a start counts first: one run handing its slot to the next.
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    peak = now = 0
    for _, change in events:
        now += change
        peak = max(peak, now)
    return peak


def check_steps_ran_once(
    workers: Workers, attempts: dict[tuple[str, int], Attempt], journals: dict[str, list[StepRecord]]
) -> int:
    """Every checkpointed step executed once in the attempt that committed it, never after its
    checkpoint; any other execution is the last step of an attempt whose process was killed in it.
    Returns how many such re-executions there were."""
    again = 0
    for attempt in attempts.values():
        journal = journals[attempt.run]
        assert attempt.steps is not None
        for position, line in enumerate(attempt.steps):
            assert line.index is not None
            step = journal[line.index]
            winner = int((step.result or "").strip('"').rsplit(":", 1)[1])
            assert line.wall <= step.finished_at, (attempt.run, line, step.finished_at)
            if line.pid != winner:
                # Not committed by this attempt: it must have died in this very step.
                assert attempt.pid in workers.killed and attempt.end is None, (attempt, line)
                assert position == len(attempt.steps) - 1, (attempt, line)
                again += 1
    executions: dict[tuple[str, int], list[int]] = defaultdict(list)
    for attempt in attempts.values():
        for line in attempt.steps or []:
            assert line.index is not None
            executions[(attempt.run, line.index)].append(line.pid)
    for run, journal in journals.items():
        for index, step in enumerate(journal):
            winner = int((step.result or "").strip('"').rsplit(":", 1)[1])
            assert executions[(run, index)].count(winner) == 1, (run, index, executions[(run, index)])
    assert sum(len(pids) for pids in executions.values()) == sum(map(len, journals.values())) + again
    return again


async def finished(wf: Workflow, run_ids: list[str]) -> dict[str, tuple[RunRecord, list[StepRecord]]] | None:
    runs = {}
    for run_id in run_ids:
        run = await wf.get_run(run_id)
        if run is None or run.status is not RunStatus.COMPLETED:
            return None
        runs[run_id] = (run, await wf.get_steps(run_id))
    return runs


def test_a_queue_of_concurrency_2_never_executes_more_while_workers_are_killed(workers_of: Any) -> None:
    workers: Workers = workers_of("llm")
    count = 24
    run_ids = [f"job-{n}" for n in range(count)]
    for _ in range(3):
        workers.spawn()
    workers.start_runs(count)  # once every worker is up: each has its share to be killed in
    rng = random.Random(1717)
    for _ in range(5):
        # At a random moment of a run: a killed owner's slots stay taken until its leases expire,
        # so wait for the queue to flow again first.
        deadline = time.monotonic() + 15
        while not workers.busy() and time.monotonic() < deadline and not workers.all_ended(count):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        workers.kill(rng.choice(workers.busy() or workers.alive))
        workers.spawn()
    runs = workers.wait_until(lambda wf: finished(wf, run_ids))
    attempts = collect_attempts(workers.lines())
    assert {a.run for a in attempts.values()} == set(run_ids)
    peak = most_at_once(executing_spans(workers, attempts))
    assert peak == CONCURRENCY, f"at most {CONCURRENCY} runs at once across the workers, saw {peak}"
    journals = {run_id: steps for run_id, (_, steps) in runs.items()}
    for run_id, (run, steps) in runs.items():
        assert [s.key for s in steps] == ["effect"] + [f"effect#{i}" for i in range(1, STEPS)], run_id
        assert _codec.loads(run.result or "null") == [_codec.loads(s.result or "null") for s in steps]
    again = check_steps_ran_once(workers, attempts, journals)
    died_in_a_run = [a for a in attempts.values() if a.end is None]
    assert len(died_in_a_run) >= 3, died_in_a_run
    assert again <= len(died_in_a_run)


def tick_time(run_id: str) -> int:
    return int(datetime.strptime(run_id, "tick@%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def seconds_in(after: float, until: float) -> set[int]:
    """The per-second ticks in ``(after, until]``."""
    return set(range(math.floor(after) + 1, math.floor(until) + 1))


async def tick_runs(wf: Workflow) -> dict[int, RunRecord]:
    return {tick_time(run.run_id): run for run in await wf.list_runs(workflow="tick", limit=10_000)}


def test_schedule_ticks_start_once_across_killed_workers_and_downtime_follows_catch_up(
    workers_of: Any,
) -> None:
    workers: Workers = workers_of("clock")
    began = time.time()
    first_ready = workers.spawn()
    workers.spawn()
    workers.spawn()
    rng = random.Random(1718)
    for _ in range(4):
        time.sleep(rng.uniform(0.4, 1.0))
        workers.kill(rng.choice(workers.alive))
        workers.spawn()
    down_start = time.time()
    workers.kill_all()
    down_end = time.time()
    time.sleep(3.0)
    # Respawn just after a whole second: a worker up within the second catches up a tick from
    # before it existed, which a scheduler that did not catch up could not have started.
    time.sleep(1.02 - time.time() % 1.0)
    respawn = time.time()
    ready = workers.spawn()
    workers.spawn()
    time.sleep(2.5)
    mark = time.time()
    alive_periods = seconds_in(first_ready + 1, down_start - 1) | seconds_in(ready + 1, mark)

    async def settled(wf: Workflow) -> dict[int, RunRecord] | None:
        ticks = await tick_runs(wf)
        due = [t for t in ticks if t <= mark]
        done = all(ticks[t].status is RunStatus.COMPLETED for t in due)
        return ticks if done and alive_periods <= set(ticks) else None

    try:
        ticks = workers.wait_until(settled, timeout=20)
    except AssertionError:
        ticks = workers.inspect(tick_runs)
        raise AssertionError(f"lost ticks {sorted(alive_periods - set(ticks))} or unfinished runs") from None
    workers.kill_all()
    assert min(ticks) > began, "a workflow that never ran starts at its next tick, not before"

    # No tick ran twice: each tick's step executed once (again only in a process killed in it).
    attempts = collect_attempts(workers.lines())
    done = {t: run for t, run in ticks.items() if run.status is RunStatus.COMPLETED}
    journals = workers.inspect(lambda wf: _journals(wf, [run.run_id for run in done.values()]))
    check_steps_ran_once(workers, {k: a for k, a in attempts.items() if a.run in journals}, journals)

    # Downtime: of the ticks no worker was up for, at most the latest CATCH_UP were started, by
    # the first scheduler back; from its start on, every tick (caught up or due) exists.
    missed = seconds_in(down_end, respawn)
    assert len(missed) >= 3
    caught_up = missed & set(ticks)
    assert caught_up <= set(sorted(missed)[-CATCH_UP:]), (sorted(missed), sorted(caught_up))
    after = sorted(t for t in ticks if t > down_end)
    assert after == list(range(after[0], after[-1] + 1)), f"a gap after the restart: {after}"
    # The first scheduler back read its clock at some S with respawn < S <= ready (+ slack for
    # the log line, a few ms): catch_up=1 starts the tick at or before S, so the first one is not after it.
    assert math.floor(respawn) - CATCH_UP + 1 <= after[0] <= math.floor(ready + 0.1) - CATCH_UP + 1, (
        respawn,
        ready,
        after[:3],
    )


async def _journals(wf: Workflow, run_ids: list[str]) -> dict[str, list[StepRecord]]:
    return {run_id: await wf.get_steps(run_id) for run_id in run_ids}
