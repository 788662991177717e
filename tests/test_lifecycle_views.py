"""What the CLI, its JSON and the viewer say about runs that are not simply running or finished:
interrupted runs (their executor gone) with the step they were in and their last owner, and
waiting runs with what they wait for. Real processes, killed with SIGKILL, on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from test_cli import durable, lines
from test_ui import CHROMIUM, CHROMIUM_ARGS

from durable import RunStatus, Workflow, _inspect
from durable._ui import UIServer

from helpers import until_status

# One application, run as separate processes, one run per mode (the run id is the mode):
#   nap      killed inside the task ``nap`` (after ``first``, and after a lease renewal recorded it)
#   between  killed in the workflow body after ``first``, outside any task: the step recorded in
#            flight (``first``) is checkpointed since, so the step in flight is unknown
#   asks     waits in its process for signal ``approve`` (timeout 600 s), owner alive
#   naps     sleeps in its process until an hour from now, owner alive
#   parked   a worker parked it on signal ``approve`` (no timeout) and exited
APP = """
import asyncio, sys
from durable import Workflow

mode, db, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
wf = Workflow("views", db=db, lease_seconds=lease)

@wf.task
async def first() -> str:
    if mode == "between":
        await asyncio.sleep(0.5)  # past a lease renewal, which records this step in flight
    return "ok"

@wf.task
async def nap() -> None:
    await asyncio.sleep(0.5)  # past a lease renewal, which records this step in flight
    print("ready", flush=True)
    await asyncio.sleep(3600)

@wf.workflow(id="{mode}")
async def flow(mode: str) -> object:
    await first()
    if mode == "nap":
        await nap()
    elif mode == "between":
        print("ready", flush=True)
        await asyncio.sleep(3600)
    elif mode == "asks":
        return await wf.signal("approve", timeout=600)
    elif mode == "naps":
        await wf.sleep(3600)
    elif mode == "parked":
        return await wf.signal("approve")
    return None

async def until_waiting() -> None:
    while (run := await wf.get_run(mode)) is None or run.status != "waiting":
        await asyncio.sleep(0.01)
    print("ready", flush=True)

async def main() -> None:
    if mode == "parked":
        await flow.start(mode=mode)
        stop = asyncio.Event()
        worker = asyncio.ensure_future(wf.run_worker(poll_interval=0.02, stop=stop))
        await until_waiting()
        stop.set()
        await worker
        await wf.close()
        return
    calling = asyncio.ensure_future(flow(mode=mode))
    if mode in ("asks", "naps"):
        await until_waiting()
    await calling

asyncio.run(main())
"""

SHORT_LEASE = 0.6
LONG_LEASE = 60.0  # no renewal (every 20 s) happens while the tests look


@dataclass
class Scene:
    url: str
    pids: dict[str, int]
    killed_at: float


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """One SQLite file holding a run of each mode; ``nap`` and ``between`` killed with SIGKILL."""
    tmp = tmp_path_factory.mktemp("views")
    app, db = tmp / "app.py", tmp / "views.db"
    app.write_text(APP)
    # Created first, by one process, so the others do not race to create the schema.
    subprocess.run([sys.executable, str(app), "parked", str(db), str(LONG_LEASE)], check=True, timeout=60)
    children: dict[str, subprocess.Popen[str]] = {}
    try:
        for mode, lease in (("nap", SHORT_LEASE), ("between", SHORT_LEASE), ("asks", LONG_LEASE)):
            children[mode] = subprocess.Popen(
                [sys.executable, str(app), mode, str(db), str(lease)], stdout=subprocess.PIPE, text=True
            )
        children["naps"] = subprocess.Popen(
            [sys.executable, str(app), "naps", str(db), str(LONG_LEASE)], stdout=subprocess.PIPE, text=True
        )
        for mode, child in children.items():
            assert child.stdout is not None and child.stdout.readline().strip() == "ready", mode
        for mode in ("nap", "between"):
            children[mode].kill()
            children[mode].wait()
        yield Scene(f"sqlite:///{db}", {m: c.pid for m, c in children.items()}, time.time())
    finally:
        for child in children.values():
            child.kill()
            child.wait()


def runs_json(scene: Scene) -> dict[str, dict[str, Any]]:
    result = durable("runs", "list", "--store", scene.url, "--json")
    assert result.exit_code == 0, result.output
    return {r["run_id"]: r for r in json.loads(result.stdout)}


def show_json(scene: Scene, run_id: str) -> dict[str, Any]:
    result = durable("runs", "show", run_id, "--store", scene.url, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def show_lines(scene: Scene, run_id: str) -> list[str]:
    result = durable("runs", "show", run_id, "--store", scene.url)
    assert result.exit_code == 0, result.output
    return lines(result.stdout)


def fact(out: list[str], name: str) -> str:
    """The value of one line of ``runs show``'s head (``name   value``)."""
    found = [line[len(name) :].strip() for line in out if line.startswith(name + " ")]
    assert len(found) == 1, (name, out)
    return found[0]


def owned_by(owner: str | None, pid: int) -> bool:
    """Whether an owner id (``host:machine:pid.start:random``) is that of process ``pid``."""
    return owner is not None and owner.rsplit(":", 2)[-2].split(".")[0] == str(pid)


def local(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- interrupted runs: a killed owner ---------------------------------------------------------


def test_a_killed_run_is_listed_interrupted_at_once_with_its_step_and_last_owner(scene: Scene) -> None:
    runs = runs_json(scene)
    nap = runs["nap"]
    assert nap["status"] == "interrupted"
    assert time.time() - scene.killed_at < SHORT_LEASE or nap["ended_at"] is not None
    assert nap["in_flight"] == {"steps": [{"key": "nap", "attempt": 1}], "known": True, "after": "first"}
    assert owned_by(nap["last_owner"], scene.pids["nap"])
    assert nap["waiting_for"] is None

    between = runs["between"]
    assert between["status"] == "interrupted"
    # The renewal recorded ``first`` in flight; its checkpoint says it finished since.
    assert between["in_flight"] == {"steps": [], "known": False, "after": "first"}
    assert owned_by(between["last_owner"], scene.pids["between"])

    out = lines(durable("runs", "list", "--store", scene.url).stdout)
    row = {line.split()[0]: line for line in out[1:-1]}
    assert "interrupted (in nap, attempt 1)" in row["nap"]
    assert "interrupted (step in flight unknown, after checkpoint first)" in row["between"]


def test_the_status_filter_finds_interrupted_runs(scene: Scene) -> None:
    result = durable("runs", "list", "--store", scene.url, "--status", "interrupted", "--json")
    assert sorted(r["run_id"] for r in json.loads(result.stdout)) == ["between", "nap"]
    result = durable("runs", "list", "--store", scene.url, "--status", "running", "--json")
    assert json.loads(result.stdout) == []


def test_runs_show_says_interrupted_with_the_step_in_flight_and_the_last_owner(scene: Scene) -> None:
    data = show_json(scene, "nap")
    assert data["status"] == "interrupted"
    assert data["in_flight"] == {"steps": [{"key": "nap", "attempt": 1}], "known": True, "after": "first"}
    assert owned_by(data["last_owner"], scene.pids["nap"])
    assert [(s["key"], s["status"]) for s in data["steps"]] == [("first", "completed")]
    out = show_lines(scene, "nap")
    assert fact(out, "status") == "interrupted"
    assert fact(out, "in flight") == "in nap, attempt 1"
    assert fact(out, "last owner").startswith(data["last_owner"] + " (")
    assert not any(line.startswith("owner ") for line in out)

    out = show_lines(scene, "between")
    assert fact(out, "in flight") == "step in flight unknown, after checkpoint first"


def test_an_interrupted_runs_duration_stops_growing(scene: Scene) -> None:
    # Its owner is dead but its lease ran on, unrenewed, up to SHORT_LEASE after the kill.
    time.sleep(max(0.0, scene.killed_at + SHORT_LEASE + 0.05 - time.time()))
    before = show_json(scene, "nap")
    time.sleep(0.3)
    after = show_json(scene, "nap")
    assert before["duration"] == after["duration"]
    assert before["ended_at"] == after["ended_at"] is not None
    assert before["ended_at"] <= scene.killed_at + SHORT_LEASE
    assert before["end"] < after["observed_at"]
    assert after["duration"] == pytest.approx(after["ended_at"] - after["created_at"])
    assert fact(show_lines(scene, "nap"), "duration").endswith(" (stopped)")
    # A live waiting run's duration does grow: it is still going on.
    asks = [show_json(scene, "asks") for _ in range(2)]
    assert asks[0]["ended_at"] is None and asks[1]["duration"] > asks[0]["duration"]


# -- waiting runs say what for -------------------------------------------------------------------


def test_waiting_runs_say_which_signal_or_until_when(scene: Scene) -> None:
    runs = runs_json(scene)
    assert runs["asks"]["status"] == "waiting"
    assert runs["asks"]["waiting_for"] == {
        "kind": "signal",
        "signal": "approve",
        "timeout": 600,
        "delivered": False,
    }
    assert runs["parked"]["status"] == "waiting" and runs["parked"]["owner"] is None
    assert runs["parked"]["waiting_for"] == {
        "kind": "signal", "signal": "approve", "timeout": None, "delivered": False,
    }  # fmt: skip
    naps = runs["naps"]
    until = naps["waiting_for"]["until"]
    assert naps["waiting_for"] == {"kind": "sleep", "until": until, "until_iso": iso(until)}
    assert until == pytest.approx(naps["created_at"] + 3600, abs=30)

    out = lines(durable("runs", "list", "--store", scene.url).stdout)
    row = {line.split()[0]: line for line in out[1:-1]}
    assert "waiting (signal approve, timeout 10m00s)" in row["asks"]
    assert "waiting (signal approve)" in row["parked"]
    assert f"waiting (sleep until {local(until)})" in row["naps"]

    assert fact(show_lines(scene, "asks"), "waiting for") == "signal approve, timeout 10m00s"
    assert fact(show_lines(scene, "parked"), "waiting for") == "signal approve"


def test_a_durable_sleep_is_a_sleep_until_a_time_not_a_step_with_an_epoch_result(scene: Scene) -> None:
    data = show_json(scene, "naps")
    sleep = data["steps"][-1]
    assert (sleep["key"], sleep["kind"], sleep["status"]) == ("durable:sleep", "sleep", "sleeping")
    assert sleep["result"] is None
    assert sleep["until_iso"] == iso(sleep["until"])
    assert sleep["result_preview"] == f"until {iso(sleep['until'])}"
    assert data["waiting_for"]["until"] == sleep["until"]
    out = show_lines(scene, "naps")
    assert fact(out, "waiting for") == f"sleep until {local(sleep['until'])}"
    row = next(line for line in out if "durable:sleep" in line)
    assert row.split()[:5] == ["2", "durable:sleep", "(sleep)", "sleeping", "1"]
    assert row.endswith(f"until {local(sleep['until'])}")
    assert str(sleep["until"]).split(".")[0] not in row


# -- the viewer ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(scene: Scene) -> Iterator[UIServer]:
    with UIServer(scene.url, port=0, poll_interval=0.3) as server:
        yield server


def api(server: UIServer, path: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=10) as response:
        return json.loads(response.read())


def test_the_viewer_endpoints_are_the_cli_json(scene: Scene, viewer: UIServer) -> None:
    listed = {r["run_id"]: r for r in api(viewer, "/api/runs")["runs"]}
    cli = runs_json(scene)
    for run_id in ("nap", "between", "asks", "naps", "parked"):
        for field in ("status", "in_flight", "last_owner", "waiting_for"):
            assert listed[run_id][field] == cli[run_id][field], (run_id, field)
    interrupted = api(viewer, "/api/runs?status=interrupted")["runs"]
    assert sorted(r["run_id"] for r in interrupted) == ["between", "nap"]
    run = api(viewer, "/api/run?id=nap")
    assert run["status"] == "interrupted"
    assert run["in_flight"] == cli["nap"]["in_flight"]


@pytest.fixture
def page(viewer: UIServer) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set DURABLE_TEST_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright to run browser tests"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            yield page
            assert errors == []
        finally:
            browser.close()


def test_the_page_lists_interrupted_and_waiting_runs_with_what_they_are_at(
    scene: Scene, viewer: UIServer, page: Any
) -> None:
    page.goto(viewer.url)
    page.locator('#runs tr[data-run-id="nap"]').wait_for()

    def row(run_id: str) -> Any:
        return page.locator(f'#runs tr[data-run-id="{run_id}"]')

    assert row("nap").get_attribute("data-status") == "interrupted"
    assert row("nap").locator(".badge").inner_text() == "interrupted"
    assert row("nap").locator(".detail").inner_text() == "in nap, attempt 1"
    assert row("between").locator(".detail").inner_text() == "step in flight unknown, after checkpoint first"
    assert row("asks").locator(".detail").inner_text() == "signal approve, timeout 10m00s"
    assert row("parked").locator(".detail").inner_text() == "signal approve"
    assert row("naps").locator(".detail").inner_text().startswith("sleep until ")


def test_the_page_shows_an_interrupted_run_stopped_with_its_step_and_last_owner(
    scene: Scene, viewer: UIServer, page: Any
) -> None:
    time.sleep(max(0.0, scene.killed_at + SHORT_LEASE + 0.05 - time.time()))
    page.goto(viewer.url + "#run=nap")
    page.locator('#run-facts dd[data-fact="in flight"]').wait_for()
    assert page.locator("#run-status").inner_text() == "interrupted"
    assert page.locator('#run-facts dd[data-fact="in flight"]').inner_text() == "in nap, attempt 1"
    last_owner = page.locator('#run-facts dd[data-fact="last owner"]').inner_text()
    assert owned_by(last_owner.split(" (")[0], scene.pids["nap"])
    assert page.locator('#run-facts dd[data-fact="owner"]').count() == 0
    duration = page.locator('#run-facts dd[data-fact="duration"]').inner_text()
    assert duration.endswith(" (stopped)")
    page.wait_for_timeout(1000)  # three refreshes later (every 0.3 s), the same duration
    assert page.locator('#run-facts dd[data-fact="duration"]').inner_text() == duration
    assert page.locator("svg#timeline line.now").count() == 0


def test_the_page_shows_a_sleep_until_a_time(scene: Scene, viewer: UIServer, page: Any) -> None:
    page.goto(viewer.url + "#run=naps")
    page.locator('#steps tr[data-key="durable:sleep"]').wait_for()
    until = api(viewer, "/api/run?id=naps")["waiting_for"]["until"]
    cells = page.locator('#steps tr[data-key="durable:sleep"] td')
    assert cells.nth(3).inner_text() == "sleeping"
    assert cells.nth(7).inner_text() == f"until {local(until)}"
    assert (
        page.locator('#run-facts dd[data-fact="waiting for"]').inner_text() == f"sleep until {local(until)}"
    )


# -- the API and the view model, in one process ---------------------------------------------------


@pytest.fixture
async def mwf() -> AsyncIterator[Workflow]:
    wf = Workflow("views", db="memory://", default_retries=0, lease_seconds=0.3)
    yield wf
    await wf.close()


async def test_list_runs_by_status_interrupted(mwf: Workflow) -> None:
    started = asyncio.Event()

    @mwf.task
    async def hold() -> None:
        started.set()
        await asyncio.sleep(3600)

    @mwf.workflow(id="hold-{n}")
    async def holds(n: int) -> None:
        await hold()

    @mwf.workflow(id="done")
    async def done() -> int:
        return 1

    assert await done() == 1
    abandoned = asyncio.ensure_future(holds(1))
    await started.wait()
    abandoned.cancel()
    await asyncio.gather(abandoned, return_exceptions=True)
    started.clear()
    live = asyncio.ensure_future(holds(2))
    await started.wait()
    try:
        found = await mwf.list_runs(statuses={RunStatus.INTERRUPTED})
        assert [r.run_id for r in found] == ["hold-1"]
        assert [r.run_id for r in await mwf.list_runs(statuses={RunStatus.RUNNING})] == ["hold-2"]
        both = await mwf.list_runs(statuses={RunStatus.INTERRUPTED, RunStatus.COMPLETED})
        assert sorted(r.run_id for r in both) == ["done", "hold-1"]
        store = await mwf.get_store()
        summary = (await _inspect.summarize(store, found))[0]
        assert summary.status == "interrupted" and summary.last_owner == mwf.owner
        assert summary.in_flight is not None and summary.in_flight.steps == (("hold", 1),)
        timeline = await _inspect.load_timeline(store, "hold-1")
        assert timeline.run.status == "interrupted" and timeline.stopped_at is not None
        # A running run's timeline says what it executes; its listing row need not read its journal.
        running = await _inspect.load_timeline(store, "hold-2")
        assert running.run.status == "running" and running.stopped_at is None
        assert _inspect.RunSummary.of(await store.get_run("hold-2")).in_flight is None  # type: ignore[arg-type]
    finally:
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)


async def test_an_in_process_signal_wait_names_its_signal_across_lease_renewals(mwf: Workflow) -> None:
    @mwf.workflow(id="asks")
    async def asks() -> Any:
        return await mwf.signal("approve", timeout=30)

    calling = asyncio.ensure_future(asks())
    try:
        await until_status(mwf, "asks", RunStatus.WAITING)
        store = await mwf.get_store()
        waiting = (await _inspect.load_timeline(store, "asks")).run.waiting_for
        assert waiting is not None and (waiting.signal, waiting.timeout) == ("approve", 30)
        await asyncio.sleep(0.35)  # past lease renewals (every 0.1 s)
        waiting = (await _inspect.load_timeline(store, "asks")).run.waiting_for
        assert waiting is not None and waiting.kind == "signal" and waiting.signal == "approve"
        await mwf.complete("asks", "approve", "yes")
        assert await calling == "yes"
        assert (await _inspect.load_timeline(store, "asks")).run.waiting_for is None
    finally:
        calling.cancel()


async def test_an_in_process_signal_wait_keeps_its_timeout_across_lease_renewals(mwf: Workflow) -> None:
    @mwf.workflow(id="asks")
    async def asks() -> Any:
        return await mwf.signal("approve", timeout=30)

    calling = asyncio.ensure_future(asks())
    try:
        await until_status(mwf, "asks", RunStatus.WAITING)
        await asyncio.sleep(0.35)
        waiting = (await _inspect.load_timeline(await mwf.get_store(), "asks")).run.waiting_for
        assert waiting is not None and waiting.timeout == 30
    finally:
        calling.cancel()
        await asyncio.gather(calling, return_exceptions=True)


async def test_a_short_sleep_is_sleeping_until_it_ends_then_completed(mwf: Workflow) -> None:
    @mwf.workflow(id="dozes")
    async def dozes() -> None:
        await mwf.sleep(0.6)

    calling = asyncio.ensure_future(dozes())
    store = await mwf.get_store()
    try:
        while not (await store.load_steps("dozes")):
            await asyncio.sleep(0.01)
        step = (await _inspect.load_timeline(store, "dozes")).steps[0]
        assert (step.kind, step.status, step.result) == ("sleep", "sleeping", None)
        await calling
        step = (await _inspect.load_timeline(store, "dozes")).steps[0]
        assert (step.kind, step.status, step.result) == ("sleep", "completed", None)
        assert step.to_json()["result_preview"] == f"until {iso(step.until or 0)}"
    finally:
        calling.cancel()


async def test_a_parked_signal_wait_says_when_its_signal_was_delivered(mwf: Workflow) -> None:
    @mwf.workflow(id="asks-later")
    async def asks_later() -> Any:
        return await mwf.signal("approve")

    await asks_later.start()
    stop = asyncio.Event()
    worker = asyncio.ensure_future(mwf.run_worker(poll_interval=0.02, stop=stop))
    await until_status(mwf, "asks-later", RunStatus.WAITING)
    stop.set()
    await worker
    store = await mwf.get_store()
    [before] = await _inspect.summarize(store, await mwf.list_runs())
    assert before.waiting_for == _inspect.WaitingFor("signal", signal="approve")
    await mwf.complete("asks-later", "approve", "yes")
    [after] = await _inspect.summarize(store, await mwf.list_runs())
    assert after.status == "waiting" and after.waiting_for is not None and after.waiting_for.delivered
    assert after.to_json()["waiting_for"] == {
        "kind": "signal", "signal": "approve", "timeout": None, "delivered": True,
    }  # fmt: skip


async def test_a_run_interrupted_while_it_slept_says_it_was_waiting_not_a_step(mwf: Workflow) -> None:
    @mwf.workflow(id="sleeps-in")
    async def sleeps_in() -> None:
        await mwf.sleep(30)

    calling = asyncio.ensure_future(sleeps_in())
    await until_status(mwf, "sleeps-in", RunStatus.WAITING)
    calling.cancel()
    await asyncio.gather(calling, return_exceptions=True)
    timeline = await _inspect.load_timeline(await mwf.get_store(), "sleeps-in")
    run = timeline.run
    assert run.status == "interrupted" and run.last_owner == mwf.owner
    assert run.in_flight is None
    assert run.waiting_for is not None and run.waiting_for.kind == "sleep"
    assert run.waiting_for.until == timeline.steps[0].until
