"""A full disk under SQLite (issue 15, item 6): a checkpoint that cannot be written is retried as a
write, never by running its task body again; the worker lives on; what was committed stays.

The disk is real: a 2 MB tmpfs of the test's own holds the store, and a filler file takes every
byte left on it while step bodies are in flight.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable.context
from durable import RunStatus, Workflow
from durable.errors import StoreUnavailable
from durable.store import RunRecord
from durable_sqlite import SQLiteStore

pytestmark = pytest.mark.slow

STEPS = 5
JOBS = 3
BLOCKED_STEP = 2
"""The step whose bodies are in flight when the disk fills: their checkpoints meet a full disk."""

APP = textwrap.dedent(
    f"""
    import asyncio
    import os
    from pathlib import Path
    from durable import Workflow

    # A lease far longer than the disk stays full: no run's lease expires meanwhile, so any
    # second execution of a body would be the store's doing, not a takeover.
    wf = Workflow("full", db=os.environ["FULL_DB"], lease_seconds=20.0)
    LOG, GATE = os.environ["FULL_LOG"], Path(os.environ["FULL_GATE"])

    @wf.task
    async def work(job: int, n: int) -> str:
        with open(LOG, "a") as f:
            f.write(f"{{job}}:{{n}}\\n")
        if n == {BLOCKED_STEP}:
            while not GATE.exists():
                await asyncio.sleep(0.01)
        return f"{{job}}:{{n}}:" + "x" * 2000  # each checkpoint needs new pages in the WAL

    @wf.workflow(id="job-{{k}}")
    async def job(k: int) -> int:
        for n in range({STEPS}):
            await work(k, n)
        return k
    """
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted for this test alone (unmounted afterwards)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command: cannot make a small disk to fill")
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({mounted.stderr.strip()}): cannot fill a disk")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; returns the filler file (delete it to free the disk)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (b"f" * 65536, b"f"):
            try:
                while True:
                    os.write(fd, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    assert os.statvfs(disk).f_bavail == 0
    return filler


def lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def wait_until(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        found = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    conn.close()
    return found


def start(url: str, jobs: range) -> None:
    async def main() -> None:
        wf = Workflow("full", db=url)

        @wf.workflow(id="job-{k}")
        async def job(k: int) -> int:
            raise AssertionError("executed by the worker only")

        for k in jobs:
            await job.start(k)
        await wf.close()

    asyncio.run(main())


def test_checkpoints_meeting_a_full_disk_are_retried_as_writes_and_no_body_runs_twice(
    small_disk: Path, tmp_path: Path
) -> None:
    db = small_disk / "full.db"
    url = f"sqlite:///{db}"
    log, gate = tmp_path / "steps.log", tmp_path / "gate"
    (tmp_path / "fullapp.py").write_text(APP)
    env = {
        **os.environ, "FULL_DB": url, "FULL_LOG": str(log), "FULL_GATE": str(gate),
        "PYTHONPATH": str(tmp_path),
    }  # fmt: skip
    durable_cli = Path(sys.executable).with_name("durable")
    worker = subprocess.Popen(
        [str(durable_cli), "worker", "fullapp:wf", "--store", url, "--poll", "0.05", "--concurrency", "8"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        start(url, range(JOBS))
        in_flight = sorted(f"{k}:{n}" for k in range(JOBS) for n in range(BLOCKED_STEP + 1))
        wait_until(lambda: sorted(lines(log)) == in_flight, "the blocked step's bodies to start")
        filler = fill(small_disk)
        gate.touch()  # the bodies return; their checkpoints meet the full disk
        time.sleep(2.5)  # the disk stays full for a quarter of the core's write budget
        assert worker.poll() is None, "the worker exited on a full disk"
        assert sorted(lines(log)) == in_flight, "a step ran before its predecessor's checkpoint was written"
        filler.unlink()
        done = {f"job-{k}": "completed" for k in range(JOBS)}
        wait_until(lambda: statuses(db) == done, "every run to complete after the disk was freed")
        start(url, range(JOBS, JOBS + 1))  # the worker still takes new runs
        wait_until(lambda: statuses(db).get(f"job-{JOBS}") == "completed", "a run started afterwards")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
    executed = Counter(lines(log))
    expected = {f"{k}:{n}" for k in range(JOBS + 1) for n in range(STEPS)}
    assert set(executed) == expected and set(executed.values()) == {1}, (executed, err)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        steps = conn.execute("SELECT run_id, key, status, substr(result, 1, 8) FROM steps").fetchall()
    conn.close()
    assert len(steps) == (JOBS + 1) * STEPS
    for run_id, _key, status, result in steps:
        assert status == "completed" and result.startswith(f'"{run_id.removeprefix("job-")}:'), steps


def run(run_id: str) -> RunRecord:
    now = time.time()
    return RunRecord(run_id, "wf", RunStatus.PENDING, "{}", "d", now, now)


async def test_a_write_to_a_full_disk_is_store_unavailable_naming_the_file_and_nothing_is_lost(
    small_disk: Path,
) -> None:
    db = small_disk / "store.db"
    async with SQLiteStore(db) as store:
        committed = [run(f"before-{i}") for i in range(20)]
        for record in committed:
            await store.create_run(record)
        filler = fill(small_disk)
        with pytest.raises(StoreUnavailable) as raised:
            await asyncio.gather(*(store.create_run(run(f"during-{i}")) for i in range(5)))
        assert str(db) in str(raised.value) and "SQLITE_FULL" in str(raised.value)
        assert await store.get_run("before-3") == committed[3]  # reads go on
        assert await store.get_run("during-0") is None
        filler.unlink()
        await store.create_run(run("after"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = sorted(row[0] for row in conn.execute("SELECT run_id FROM runs"))
    conn.close()
    assert ids == sorted([r.run_id for r in committed] + ["after"])


async def test_a_disk_full_for_longer_than_the_write_budget_fails_the_call_naming_the_file(
    small_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable.context, "STORE_WRITE_BUDGET", 0.5)
    executed: list[int] = []
    wf = Workflow("full", db=f"sqlite:///{small_disk / 'call.db'}")

    @wf.task
    async def work(n: int) -> str:
        executed.append(n)
        return "x" * 2000

    @wf.workflow
    async def job() -> None:
        await work(0)
        filler_box.append(fill(small_disk))
        await work(1)

    filler_box: list[Path] = []
    try:
        with pytest.raises(StoreUnavailable, match=r"call\.db.*SQLITE_FULL"):
            await job.run("long")
        assert executed == [0, 1]  # the checkpoint of step 1 was retried, not its body
    finally:
        for filler in filler_box:
            filler.unlink()
        await wf.close()
