"""Real process crashes: workers killed with SIGKILL (and paused with SIGSTOP) mid-run.

Invariants checked over every trial:
- every run completes with the right result;
- a step whose checkpoint committed never runs again;
- a step runs more than once only in processes that were killed while running it;
- no two processes execute the same run at the same time.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from isolated_stores import isolated_url

from durable import RunStatus, Workflow

APP = str(Path(__file__).with_name("crash_app.py"))
STEPS = 5
pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    with isolated_url(request.param, "crash") as url:
        yield url


class Cluster:
    """Worker processes of crash_app.py sharing one store."""

    def __init__(self, url: str, log: Path, env: dict[str, str] | None = None) -> None:
        self.url, self.log = url, log
        self.env = {**os.environ, **(env or {})}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()

    def command(self, *args: str) -> None:
        subprocess.run([sys.executable, APP, *args], check=True, env=self.env, timeout=60)

    def spawn(self) -> subprocess.Popen[bytes]:
        errors = self.log.with_suffix(".stderr")
        with errors.open("ab") as stderr:
            process = subprocess.Popen(
                [sys.executable, APP, "worker", self.url, str(self.log)],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        if not ready or not process.stdout.readline():  # "worker PID ready": importable and started
            process.kill()
            process.wait(timeout=10)
            raise AssertionError(f"worker exited with {process.returncode}: {errors.read_text()[-2000:]}")
        self.workers.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.killed.add(process.pid)
        self.workers.remove(process)

    def reap_dead(self) -> None:
        """Workers that killed themselves at a CRASH_AT point count as killed."""
        for process in list(self.workers):
            if process.poll() is not None:
                self.killed.add(process.pid)
                self.workers.remove(process)

    def stop(self) -> None:
        for process in self.workers:
            process.kill()
            process.wait(timeout=10)
        self.workers.clear()

    def executions(self) -> list[tuple[float, int, str, int]]:
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines():
            at, pid, run, index = line.split()
            rows.append((float(at), int(pid), run, int(index)))
        return rows


@pytest.fixture
def cluster(store_url: str, tmp_path: Path) -> Iterator[Cluster]:
    nodes = Cluster(store_url, tmp_path / "effects.log")
    yield nodes
    nodes.stop()


def inspect(url: str, fn: Any) -> Any:
    async def go() -> Any:
        async with Workflow("crash-app", db=url) as wf:
            return await fn(wf)

    return asyncio.run(go())


def wait_until(cluster: Cluster, predicate: Any, timeout: float = 45.0, respawn: bool = True) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster.reap_dead()
        if respawn and not cluster.workers:
            cluster.spawn()
        value = inspect(cluster.url, predicate)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not reached within {timeout}s")


async def all_runs_completed(wf: Workflow, count: int) -> bool:
    runs = [await wf.get_run(f"r-{n}") for n in range(count)]
    return all(run is not None and run.status is RunStatus.COMPLETED for run in runs)


def check_invariants(cluster: Cluster, run_count: int) -> dict[tuple[str, int], int]:
    """Returns executions per (run, step) after asserting the invariants."""

    async def checkpoints(wf: Workflow) -> dict[str, Any]:
        return {f"r-{n}": await wf.get_steps(f"r-{n}") for n in range(run_count)}

    journal = inspect(cluster.url, checkpoints)
    executions: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
    for at, pid, run, index in cluster.executions():
        executions[(run, index)].append((at, pid))
    counts = {}
    for run, steps in journal.items():
        assert [s.key for s in steps] == ["effect"] + [f"effect#{i}" for i in range(1, STEPS)], run
        for index, step in enumerate(steps):
            winner = int((step.result or "").strip('"').split(":")[2])
            done = executions[(run, index)]
            counts[(run, index)] = len(done)
            assert [pid for _, pid in done].count(winner) == 1, (run, index, done)
            for at, pid in done:
                # Re-executions happen only in processes that died while running the step ...
                assert pid == winner or pid in cluster.killed, (run, index, done, cluster.killed)
                # ... and never after the checkpoint was written.
                assert at <= step.finished_at, (run, index, at, step.finished_at)
        # One process at a time: the executing pid changes only forward, never back.
        order = [pid for _, pid, r, _ in sorted(cluster.executions()) if r == run]
        owners = [pid for i, pid in enumerate(order) if i == 0 or pid != order[i - 1]]
        assert len(owners) == len(set(owners)), (run, owners)
    return counts


def test_sigkill_at_random_moments_never_reexecutes_a_committed_step(cluster: Cluster) -> None:
    runs = 6
    cluster.command("start", cluster.url, str(runs))
    cluster.spawn()
    cluster.spawn()
    rng = random.Random(1234)
    for _ in range(5):
        time.sleep(rng.uniform(0.05, 0.35))
        cluster.kill(rng.choice(cluster.workers))
        cluster.spawn()
    wait_until(cluster, lambda wf: all_runs_completed(wf, runs))
    counts = check_invariants(cluster, runs)
    assert len(cluster.killed) >= 5  # the five kills (and any worker that died on its own)
    # A process dies in at most one step of each run: a run re-executes at most one step per
    # killed process that was executing it, however the kills fell.
    executions = cluster.executions()
    for n in range(runs):
        run = f"r-{n}"
        again = sum(counts[(run, index)] - 1 for index in range(STEPS))
        died_in_it = {pid for _, pid, r, _ in executions if r == run and pid in cluster.killed}
        assert again <= len(died_in_it), (run, again, sorted(died_in_it))


@pytest.mark.parametrize("when", ["effect", "checkpoint"])
def test_sigkill_between_side_effect_checkpoint_and_next_step(
    store_url: str, tmp_path: Path, when: str
) -> None:
    cluster = Cluster(
        store_url,
        tmp_path / "effects.log",
        {"CRASH_AT": f"r-1:2:{when}", "CRASH_MARKER": str(tmp_path / "crashed")},
    )
    try:
        cluster.command("start", store_url, "3")
        cluster.spawn()
        wait_until(cluster, lambda wf: all_runs_completed(wf, 3))
        assert (tmp_path / "crashed").exists()
        counts = check_invariants(cluster, 3)
    finally:
        cluster.stop()
    # After the side effect but before its checkpoint: the step runs again (at least once).
    # After its checkpoint: it never runs again; the next step runs once.
    assert counts[("r-1", 2)] == (2 if when == "effect" else 1)
    assert counts[("r-1", 3)] == 1
    # Other runs in the same process may have been interrupted too, but never more than once.
    assert all(n <= 2 for n in counts.values())


def test_a_paused_owner_cannot_write_after_another_process_took_over(cluster: Cluster) -> None:
    cluster.command("start-one", cluster.url, "slowpoke", "0")
    first = cluster.spawn()
    while not any(run == "slowpoke" for _, _, run, _ in cluster.executions()):
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)
    try:
        second = cluster.spawn()
        result = wait_until(
            cluster,
            lambda wf: _result(wf, "slowpoke"),
            respawn=False,
        )
    finally:
        first.send_signal(signal.SIGCONT)
    time.sleep(2.0)  # the resumed owner finds its lease gone
    assert inspect(cluster.url, lambda wf: _result(wf, "slowpoke")) == result
    assert result[1].endswith(f":{second.pid}")  # written by the new owner, not overwritten
    steps = inspect(cluster.url, lambda wf: wf.get_steps("slowpoke"))
    assert [s.result for s in steps] == [f'"{r}"' for r in result]


async def _result(wf: Workflow, run_id: str) -> Any:
    run = await wf.get_run(run_id)
    if run is None or run.status is not RunStatus.COMPLETED:
        return None
    from durable import _codec

    return _codec.loads(run.result or "null")


async def _parked(wf: Workflow, run_id: str) -> Any:
    run = await wf.get_run(run_id)
    return run if run is not None and run.status is RunStatus.WAITING and run.owner is None else None


def test_a_durable_sleep_survives_a_crash_and_wakes_at_the_original_time(cluster: Cluster) -> None:
    cluster.command("start-one", cluster.url, "sleeper", "0")
    worker = cluster.spawn()
    parked = wait_until(cluster, lambda wf: _parked(wf, "sleeper-0"), respawn=False)
    cluster.kill(worker)
    cluster.spawn()
    woke = wait_until(cluster, lambda wf: _result(wf, "sleeper-0"))
    assert parked.wake_at <= woke <= parked.wake_at + 5
    assert [run for _, _, run, _ in cluster.executions()] == ["sleeper-0"]


def test_a_signal_wait_survives_a_crash_and_resumes_on_another_process(cluster: Cluster) -> None:
    cluster.command("start-one", cluster.url, "waiter", "0")
    worker = cluster.spawn()
    wait_until(cluster, lambda wf: _parked(wf, "waiter-0"), respawn=False)
    cluster.kill(worker)
    cluster.command("signal", cluster.url, "waiter-0", "go")
    resumer = cluster.spawn()
    payload = wait_until(cluster, lambda wf: _result(wf, "waiter-0"))
    assert set(payload) == {"from"} and payload["from"] not in (worker.pid, resumer.pid)
    assert [run for _, _, run, _ in cluster.executions()] == ["waiter-0"]
