"""`durable worker MODULE:ATTRIBUTE --store URL`: a real worker process resumes stored runs."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from durable import RunStatus, Workflow

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

APP = textwrap.dedent(
    """
    from durable import Workflow

    wf = Workflow("jobs", db="memory://")  # the command line points it at the real store

    @wf.task
    async def square(n: int) -> int:
        return n * n

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return await square(n)
    """
)


def test_the_worker_command_resumes_pending_runs_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "jobsapp.py").write_text(APP)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    sys.path.insert(0, str(tmp_path))
    try:
        import jobsapp  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))

    async def enqueue() -> None:
        jobsapp.wf.use_store(url)
        async with jobsapp.wf:
            for n in range(3):
                await jobsapp.job.start(n)

    asyncio.run(enqueue())
    durable = Path(sys.executable).with_name("durable")
    worker = subprocess.Popen(
        [str(durable), "worker", "jobsapp:wf", "--store", url, "--poll", "0.05"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )

    async def statuses() -> list[RunStatus]:
        async with Workflow("jobs", db=url) as wf:
            return [run.status for run in await wf.list_runs()]

    try:
        deadline = time.monotonic() + 30
        while asyncio.run(statuses()) != [RunStatus.COMPLETED] * 3:
            assert time.monotonic() < deadline, "the worker did not finish the runs"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert "serving job; queues default from <SQLiteStore" in stderr


def test_a_bad_target_is_one_clear_line(tmp_path: Path) -> None:
    durable = Path(sys.executable).with_name("durable")
    result = subprocess.run(
        [str(durable), "worker", "no_such_module:wf"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot import 'no_such_module'")
    assert result.stderr.count("\n") == 1


# -- what the worker logs (issue 14, defect 7) ---------------------------------------------

OPS_APP = textwrap.dedent(
    """
    from durable import Workflow
    from durable.backoff import constant

    wf = Workflow("ops", db="memory://", default_backoff=constant(0))
    attempts = {"n": 0}

    @wf.task(retries=1)
    async def reserve(n: int) -> int:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("stock service timed out")
        return n

    @wf.workflow(id="ok-{n}")
    async def ok(n: int) -> int:
        return await reserve(n)

    @wf.workflow(id="bad-{n}")
    async def bad(n: int) -> int:
        raise ValueError(f"no stock for item {n}")

    @wf.workflow(id="nap-{n}")
    async def nap(n: int) -> int:
        await wf.sleep(3600)
        return n
    """
)


def _app(tmp_path: Path, name: str, source: str) -> Any:
    """Write module ``name`` into ``tmp_path`` and import it here too."""
    (tmp_path / f"{name}.py").write_text(source)
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


def _worker(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    durable = Path(sys.executable).with_name("durable")
    # The developer's own DURABLE_STORE must not leak in: each test says which stores it sets.
    environment = {k: v for k, v in os.environ.items() if k != "DURABLE_STORE"}
    environment.update({"PYTHONPATH": str(tmp_path), **(env or {})})
    return subprocess.Popen(
        [str(durable), "worker", *args, "--poll", "0.05"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def _stop(worker: subprocess.Popen[str]) -> str:
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    return stderr


def _wait_for_statuses(url: str, expected: dict[str, RunStatus]) -> None:
    async def statuses() -> dict[str, RunStatus]:
        async with Workflow("probe", db=url) as wf:
            return {run.run_id: run.status for run in await wf.list_runs()}

    deadline = time.monotonic() + 30
    while (seen := asyncio.run(statuses())) != expected:
        assert time.monotonic() < deadline, f"the worker left the runs {seen}, not {expected}"
        time.sleep(0.05)


def _enqueue_ops(tmp_path: Path, url: str) -> None:
    ops = _app(tmp_path, f"opsapp_{tmp_path.name[-8:].replace('-', '_')}", OPS_APP)

    async def enqueue() -> None:
        ops.wf.use_store(url)
        async with ops.wf:
            await ops.ok.start(1)
            await ops.bad.start(2)
            await ops.nap.start(3)

    asyncio.run(enqueue())
    (tmp_path / "opsapp.py").write_text(OPS_APP)


DONE = {"ok-1": RunStatus.COMPLETED, "bad-2": RunStatus.FAILED, "nap-3": RunStatus.WAITING}


def test_the_worker_logs_each_run_it_takes_finishes_fails_or_parks(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    _enqueue_ops(tmp_path, url)
    worker = _worker(tmp_path, "opsapp:wf", "--store", url)
    try:
        _wait_for_statuses(url, DONE)
    finally:
        stderr = _stop(worker)
    lines = [line.split(" ", 2)[2] for line in stderr.splitlines()]  # without the date and time
    for expected in (
        "INFO durable.worker: took run 'ok-1' (workflow 'ok')",
        "INFO durable.worker: took run 'bad-2' (workflow 'bad')",
        "INFO durable.worker: took run 'nap-3' (workflow 'nap')",
    ):
        assert expected in lines, stderr
    for start in (
        "INFO durable.worker: run 'ok-1' completed after ",
        "WARNING durable.worker: run 'bad-2' failed after ",
        "INFO durable.worker: run 'nap-3' parked after ",
        "INFO durable.worker: worker ",
    ):
        assert any(line.startswith(start) for line in lines), (start, stderr)
    assert any(line.endswith(": ValueError: no stock for item 2") for line in lines), stderr
    assert any("step 'reserve' attempt 1 failed" in line for line in lines), stderr  # the engine's
    assert sum("'bad-2'" in line for line in lines) == 2, stderr  # taken, failed: once each
    assert lines[-1].endswith("stopped after taking 3 run(s)"), stderr
    assert not any("DEBUG" in line for line in lines), stderr


def test_quiet_keeps_only_failures_and_verbose_adds_every_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    _enqueue_ops(tmp_path, url)
    worker = _worker(tmp_path, "opsapp:wf", "--store", url, "-q")
    try:
        _wait_for_statuses(url, DONE)
    finally:
        quiet = _stop(worker).splitlines()
    assert len(quiet) == 1 and " WARNING durable.worker: run 'bad-2' failed after " in quiet[0], quiet

    async def add_one() -> None:
        ops = _app(tmp_path, f"opsapp_v_{tmp_path.name[-8:].replace('-', '_')}", OPS_APP)
        ops.wf.use_store(url)
        async with ops.wf:
            await ops.ok.start(4)

    asyncio.run(add_one())
    worker = _worker(tmp_path, "opsapp:wf", "--store", url, "-v")
    try:
        _wait_for_statuses(url, {**DONE, "ok-4": RunStatus.COMPLETED})
    finally:
        verbose = _stop(worker)
    assert "DEBUG durable.worker: run 'ok-4' step 'reserve' (task 'reserve'): attempt 1 started" in verbose
    assert "DEBUG durable.worker: run 'ok-4' step 'reserve' finished after 2 attempt(s)" in verbose
    assert "DEBUG aiosqlite" not in verbose  # -vv shows the libraries' debug output
    assert "INFO durable.worker: run 'ok-4' completed after " in verbose


# -- which store the worker serves (issue 14, defect 7) --------------------------------------


def _store_app(db: str) -> str:
    return APP.replace('db="memory://"', f"db={db!r}")


def test_the_worker_refuses_a_durable_store_that_contradicts_the_apps_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from durable.cli import cli

    app_url, env_url = f"sqlite:///{tmp_path / 'app.db'}", f"sqlite:///{tmp_path / 'env.db'}"
    (tmp_path / "clashapp.py").write_text(_store_app(app_url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("DURABLE_STORE", env_url)
    result = CliRunner().invoke(cli, ["worker", "clashapp:wf"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: which store should this worker serve? clashapp:wf sets db={app_url} but "
        f"DURABLE_STORE={env_url}; pass --store URL to choose one, or unset DURABLE_STORE\n"
    )
    assert not (tmp_path / "app.db").exists() and not (tmp_path / "env.db").exists()


def test_store_on_the_command_line_wins_and_says_what_it_replaced(tmp_path: Path) -> None:
    app_url, env_url = f"sqlite:///{tmp_path / 'app.db'}", f"sqlite:///{tmp_path / 'env.db'}"
    cli_url = f"sqlite:///{tmp_path / 'cli.db'}"
    jobs = _app(tmp_path, f"jobs_cli_{tmp_path.name[-8:].replace('-', '_')}", APP)

    async def enqueue() -> None:
        jobs.wf.use_store(cli_url)
        async with jobs.wf:
            await jobs.job.start(7)

    asyncio.run(enqueue())
    (tmp_path / "pickapp.py").write_text(_store_app(app_url))
    worker = _worker(tmp_path, "pickapp:wf", "--store", cli_url, env={"DURABLE_STORE": env_url})
    try:
        _wait_for_statuses(cli_url, {"job-7": RunStatus.COMPLETED})
    finally:
        stderr = _stop(worker)
    assert (
        f"from <SQLiteStore {str(tmp_path / 'cli.db')!r}> (--store, instead of pickapp:wf's db={app_url})"
        in (stderr)
    )
    assert not (tmp_path / "app.db").exists() and not (tmp_path / "env.db").exists()


def test_one_store_spelled_two_ways_is_no_conflict(tmp_path: Path) -> None:
    (tmp_path / "sameapp.py").write_text(_store_app("jobs.db"))  # a bare path, relative to the cwd
    worker = _worker(tmp_path, "sameapp:wf", env={"DURABLE_STORE": f"sqlite:///{tmp_path / 'jobs.db'}"})
    deadline = time.monotonic() + 30
    while not (tmp_path / "jobs.db").exists():
        assert worker.poll() is None, worker.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stderr = _stop(worker)
    assert "(sameapp:wf's db=, the same as $DURABLE_STORE)" in stderr


def test_durable_store_applies_when_the_app_keeps_the_default_db(tmp_path: Path) -> None:
    (tmp_path / "plainapp.py").write_text(APP.replace('db="memory://"', ""))
    url = f"sqlite:///{tmp_path / 'env.db'}"
    worker = _worker(tmp_path, "plainapp:wf", env={"DURABLE_STORE": url})
    deadline = time.monotonic() + 30
    while not (tmp_path / "env.db").exists():
        assert worker.poll() is None, worker.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stderr = _stop(worker)
    assert "($DURABLE_STORE)" in stderr
    assert not (tmp_path / "durable.db").exists()
