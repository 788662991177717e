"""The ``durable`` command against a real SQLite store filled by real workflow runs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from click.testing import CliRunner, Result

from durable import Workflow
from durable._inspect import parse_duration
from durable.backoff import constant
from durable.cli import cli
from durable.errors import ConfigurationError, RunCancelled

RUN_IDS = ["order-45", "report-2024-05-01", "order-44", "order-43", "order-42"]


class ShopApp:
    """A small shop: its tasks count their executions so tests can see what re-ran."""

    def __init__(self, url: str) -> None:
        self.wf = wf = Workflow("shop", db=url, default_retries=2, default_backoff=constant(0))
        self.calls: list[str] = []
        self.charge_attempts = 0

        @wf.task
        async def fetch_order(order_id: str) -> dict[str, Any]:
            self.calls.append("fetch_order")
            await asyncio.sleep(0.05)
            return {"id": order_id, "total": 42.5, "items": ["book", "lamp"]}

        @wf.task
        async def charge(amount: float) -> str:
            self.calls.append("charge")
            await asyncio.sleep(0.03)
            self.charge_attempts += 1
            if self.charge_attempts < 3:
                raise ConnectionError("payment gateway timed out")
            return "ch_123"

        @wf.task(retries=1)
        async def ship(order_id: str) -> str:
            self.calls.append("ship")
            await asyncio.sleep(0.05)
            if order_id == "43":
                raise ValueError("no address for order 43")
            return "shipped"

        @wf.workflow(id="order-{order_id}")
        async def process_order(order_id: str) -> str:
            order = await fetch_order(order_id)
            await charge(order["total"])
            if order_id in ("42", "44"):
                await wf.signal("approve", timeout=10)
            return await ship(order_id)

        @wf.task
        async def render(day: str) -> dict[str, int]:
            await asyncio.sleep(0.04)
            return {"orders": 3}

        @wf.workflow(id="report-{day}")
        async def daily_report(day: str) -> dict[str, int]:
            await wf.sleep(0.15)
            return await render(day)

        self.process_order = process_order
        self.daily_report = daily_report


async def populate(url: str) -> None:
    """order-42 completed (charge retried twice, approved by signal), order-43 failed in ``ship``,
    order-44 cancelled while waiting for approval, report-2024-05-01 completed after a durable
    sleep, order-45 pending (started for a worker)."""
    app = ShopApp(url)
    wf = app.wf
    async with wf:

        async def approve_later() -> None:
            await asyncio.sleep(0.3)
            await wf.complete("order-42", "approve", {"approved": True, "by": "ops"}, delivery_id="ops-1")

        approver = asyncio.create_task(approve_later())
        assert await app.process_order(order_id="42") == "shipped"
        await approver
        with pytest.raises(ValueError, match="no address"):
            await app.process_order(order_id="43")
        waiting = asyncio.create_task(app.process_order(order_id="44"))
        while (run := await wf.get_run("order-44")) is None or run.status != "waiting":
            await asyncio.sleep(0.01)
        await wf.cancel("order-44")
        with pytest.raises(RunCancelled):
            await waiting
        await asyncio.sleep(0.01)  # distinct creation times keep the listing order certain
        assert await app.daily_report(day="2024-05-01") == {"orders": 3}
        await asyncio.sleep(0.01)
        await app.process_order.start(order_id="45")


@pytest.fixture
def store_env(shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{shop_db}"
    monkeypatch.setenv("DURABLE_STORE", url)
    monkeypatch.delenv("DURABLE_DEBUG", raising=False)
    return url


def durable(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def assert_one_line_error(result: Result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {expected}\n"
    assert "Traceback" not in result.stderr


# -- plugins and stores ----------------------------------------------------------------


def test_plugins_lists_name_version_and_hooks() -> None:
    result = durable("plugins")
    assert result.exit_code == 0
    out = lines(result.stdout)
    assert out[0].split() == ["NAME", "VERSION", "HOOKS"]
    # Column widths depend on which plugins are installed; the fields do not.
    rows = [line.split() for line in out]
    assert ["durable-sqlite", "0.3.0", "durable_store_backends,", "durable_store_from_url"] in rows
    data = json.loads(durable("plugins", "--json").stdout)
    sqlite = next(p for p in data if p["name"] == "durable-sqlite")
    assert sqlite == {
        "name": "durable-sqlite",
        "version": "0.3.0",
        "hooks": ["durable_store_backends", "durable_store_from_url"],
    }


def test_stores_lists_schemes_capabilities_description_and_install_hint() -> None:
    result = durable("stores")
    assert result.exit_code == 0
    out = lines(result.stdout)
    start = out.index("sqlite  (plugin durable-sqlite)")
    assert out[start + 1 : start + 5] == [
        "schemes       sqlite://",
        "capabilities  multi-process, notify, persistent, queues, streams",
        "description   One SQLite file (WAL); several processes on one host may share it.",
        "install       pip install python-durable",
    ]
    data = {s["name"]: s for s in json.loads(durable("stores", "--json").stdout)}
    assert data["memory"]["schemes"] == ["memory"]
    assert data["sqlite"] == {
        "name": "sqlite",
        "plugin": "durable-sqlite",
        "schemes": ["sqlite"],
        "capabilities": ["multi-process", "notify", "persistent", "queues", "streams"],
        "description": "One SQLite file (WAL); several processes on one host may share it.",
        "install_hint": "pip install python-durable",
    }


# -- runs list --------------------------------------------------------------------------


def test_runs_list_newest_first_with_status_and_error(store_env: str) -> None:
    result = durable("runs", "list")
    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert out[0].split() == ["RUN", "ID", "WORKFLOW", "STATUS", "CREATED", "UPDATED", "ERROR"]
    rows = [line.split()[:3] for line in out[1:-1]]
    assert rows == [
        ["order-45", "process_order", "pending"],
        ["report-2024-05-01", "daily_report", "completed"],
        ["order-44", "process_order", "cancelled"],
        ["order-43", "process_order", "failed"],
        ["order-42", "process_order", "completed"],
    ]
    assert out[4].endswith("ValueError: no address for order 43")
    assert out[-1] == "5 runs"


def test_runs_list_json_fields(store_env: str) -> None:
    data = json.loads(durable("runs", "list", "--json").stdout)
    assert [r["run_id"] for r in data] == RUN_IDS
    failed = data[3]
    assert set(failed) == {
        "run_id", "workflow", "status", "created_at", "updated_at", "error", "cancel_requested", "owner",
        "parent_run_id", "last_owner", "in_flight", "waiting_for", "ended_at", "queue", "version",
    }  # fmt: skip
    assert failed["status"] == "failed"
    assert failed["queue"] is None  # no queue entry (a queued run's: tests/test_queues_shown.py)
    assert failed["version"] is None  # created without Workflow(version=) (tests/test_versions.py)
    assert (failed["last_owner"], failed["in_flight"], failed["waiting_for"]) == (None, None, None)
    assert failed["ended_at"] == failed["updated_at"]
    assert data[0]["ended_at"] is None  # pending: still live
    assert failed["error"] == {"type": "builtins.ValueError", "message": "no address for order 43"}
    assert data[0]["error"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--status", "failed"], ["order-43"]),
        (["--status", "failed", "--status", "cancelled"], ["order-44", "order-43"]),
        (["--workflow", "daily_report"], ["report-2024-05-01"]),
        (["--prefix", "order-4"], ["order-45", "order-44", "order-43", "order-42"]),
        (["--prefix", "order-4", "--status", "completed"], ["order-42"]),
        (["--limit", "2", "--offset", "1"], ["report-2024-05-01", "order-44"]),
        (["--since", "1h"], RUN_IDS),
        (["--offset", "5"], []),
    ],
)
def test_runs_list_filters(store_env: str, args: list[str], expected: list[str]) -> None:
    result = durable("runs", "list", *args, "--json")
    assert result.exit_code == 0, result.output
    assert [r["run_id"] for r in json.loads(result.stdout)] == expected


def test_runs_list_since_excludes_older_runs(store_env: str) -> None:
    time.sleep(0.3)
    assert json.loads(durable("runs", "list", "--since", "0.2s", "--json").stdout) == []
    result = durable("runs", "list", "--since", "0.2s")
    assert result.exit_code == 0
    assert result.stdout == "no runs match\n"


def test_runs_list_says_when_the_limit_cut_the_listing(store_env: str) -> None:
    result = durable("runs", "list", "--limit", "2")
    assert lines(result.stdout)[-1] == "2 runs (--limit reached; page with --offset)"


# -- runs show --------------------------------------------------------------------------


def test_runs_show_completed_run_with_retries_and_signal(store_env: str) -> None:
    result = durable("runs", "show", "order-42")
    assert result.exit_code == 0, result.output
    out = lines(result.stdout)
    assert out[:3] == ["run       order-42", "workflow  process_order", "status    completed"]
    assert 'inputs    {"order_id":"42"}' in out
    assert 'result    "shipped"' in out
    assert "steps (4)" in out
    header = out.index("steps (4)") + 1
    assert out[header].split() == ["#", "KEY", "TASK", "STATUS", "ATTEMPTS", "START", "DURATION", "RESULT"]
    steps = [line.split()[:5] for line in out[header + 1 : header + 5]]
    assert steps == [
        ["1", "fetch_order", "fetch_order", "completed", "1"],
        ["2", "charge", "charge", "completed", "3"],
        ["3", "durable:signal@approve", "(signal)", "completed", "1"],
        ["4", "ship", "ship", "completed", "1"],
    ]
    assert out[header + 1].endswith('{"id":"42","total":42.5,"items":["book","lamp"]}')
    assert out[header + 4].endswith('"shipped"')
    at = out.index("  charge: 2 failed attempt(s) before it succeeded")
    assert out[at + 1 : at + 3] == [
        "    attempt 1: builtins.ConnectionError: payment gateway timed out",
        "    attempt 2: builtins.ConnectionError: payment gateway timed out",
    ]
    signals = out.index("signals (1)")
    assert out[signals + 1].split() == ["SEQ", "NAME", "DELIVERY", "ID", "SENT", "PAYLOAD"]
    row = out[signals + 2].split()
    assert row[:3] == ["1", "approve", "ops-1"]
    assert row[-1] == '{"approved":true,"by":"ops"}'


def test_runs_show_json_timeline(store_env: str) -> None:
    data = json.loads(durable("runs", "show", "order-42", "--json").stdout)
    assert data["run_id"] == "order-42"
    assert data["status"] == "completed"
    assert data["inputs"] == {"order_id": "42"}
    assert data["result"] == "shipped"
    assert data["error"] is None
    assert [(s["key"], s["kind"], s["status"], s["attempts"]) for s in data["steps"]] == [
        ("fetch_order", "task", "completed", 1),
        ("charge", "task", "completed", 3),
        ("durable:signal@approve", "signal", "completed", 1),
        ("ship", "task", "completed", 1),
    ]
    charge = data["steps"][1]
    assert charge["failed_attempts"] == 2
    assert charge["result"] == "ch_123"
    assert charge["duration"] == pytest.approx(charge["finished_at"] - charge["started_at"])
    signal_wait = data["steps"][2]
    assert signal_wait["duration"] > 0.1  # the run waited for the approval, delivered 0.3 s in
    assert data["signals"] == [
        {
            "name": "approve",
            "delivery_id": "ops-1",
            "seq": data["signals"][0]["seq"],
            "sent_at": data["signals"][0]["sent_at"],
            "payload": {"approved": True, "by": "ops"},
            "payload_preview": '{"approved":true,"by":"ops"}',
        }
    ]
    starts = [s["started_at"] for s in data["steps"]]
    assert starts == sorted(starts)
    assert data["start"] <= starts[0] and data["end"] >= data["steps"][-1]["finished_at"]


def test_runs_show_failed_run_has_error_traceback_and_failed_step(store_env: str) -> None:
    result = durable("runs", "show", "order-43")
    assert result.exit_code == 0
    out = lines(result.stdout)
    assert "status    failed" in out
    assert "error     builtins.ValueError: no address for order 43" in out
    assert "traceback:" in out
    assert "Traceback (most recent call last):" in out
    assert out[out.index("traceback:") + 1 :].count("ValueError: no address for order 43") >= 1
    step = next(line for line in out if line.startswith("3  ship"))
    assert step.split()[:5] == ["3", "ship", "ship", "failed", "2"]
    assert "  ship: failed after 2 attempt(s)" in out
    assert "    builtins.ValueError: no address for order 43" in out
    data = json.loads(durable("runs", "show", "order-43", "--json").stdout)
    assert data["error"]["type"] == "builtins.ValueError"
    assert "Traceback (most recent call last)" in data["error"]["traceback"]
    assert data["steps"][-1]["error"]["message"] == "no address for order 43"
    assert data["has_result"] is False


def test_runs_show_sleep_step_spans_the_wait(store_env: str) -> None:
    data = json.loads(durable("runs", "show", "report-2024-05-01", "--json").stdout)
    sleep = data["steps"][0]
    assert (sleep["key"], sleep["kind"]) == ("durable:sleep", "sleep")
    assert sleep["until"] == pytest.approx(sleep["started_at"] + 0.15, abs=0.05)
    assert sleep["duration"] == pytest.approx(0.15, abs=0.05)
    out = lines(durable("runs", "show", "report-2024-05-01").stdout)
    assert any(
        line.startswith("1  durable:sleep  (sleep)  completed  1") and "until 2" in line for line in out
    )


# -- errors -------------------------------------------------------------------------------


def test_unknown_run_is_one_line_and_exit_1(store_env: str, shop_db: Path) -> None:
    assert_one_line_error(durable("runs", "show", "nope"), f"no run 'nope' in <SQLiteStore {str(shop_db)!r}>")
    assert_one_line_error(durable("runs", "cancel", "nope"), "cannot cancel: no run 'nope'")
    assert_one_line_error(durable("runs", "resume", "nope"), "cannot resume: no run 'nope'")


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    result = durable("runs", "list", "--store", f"sqlite:///{missing}")
    assert_one_line_error(result, f"store file {str(missing)!r} does not exist (check --store)")
    assert not missing.exists()


def test_unknown_scheme_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from durable._plugins import reset_plugin_manager

    monkeypatch.setenv("DURABLE_DISABLE_PLUGINS", "durable-redis")  # as if the extra were missing
    reset_plugin_manager()
    try:
        result = durable("runs", "list", "--store", "redis://localhost:6379/0")
    finally:
        monkeypatch.delenv("DURABLE_DISABLE_PLUGINS")
        reset_plugin_manager()
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: no installed durable plugin handles 'redis://...' (scheme 'redis')"
    )
    assert "pip install 'python-durable[redis]'" in result.stderr
    assert result.stderr.count("\n") == 1
    result = durable("runs", "list", "--store", "nosuch://x")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no installed durable plugin handles 'nosuch://...'")


def test_file_that_is_not_a_store_is_reported_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 10)
    result = durable("runs", "list", "--store", f"sqlite:///{path}")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot open store sqlite:///{path}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert path.read_bytes() == b"these are my notes, not a database\n" * 10


def test_missing_store_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_STORE", raising=False)
    result = durable("runs", "list")
    assert result.exit_code == 2
    assert "no store given: pass --store URL or set DURABLE_STORE" in result.stderr


def test_bad_json_payload(store_env: str) -> None:
    result = durable("signal", "order-45", "approve", "{bad")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: payload is not valid JSON (")
    assert result.stderr.endswith("): '{bad'\n")


@pytest.mark.parametrize("age", ["1x", "", "h", "-1d", "1e400"])
def test_bad_durations_are_usage_errors(store_env: str, age: str) -> None:
    result = durable("runs", "prune", "--older-than", age)
    assert result.exit_code == 2
    assert "Invalid value for --older-than: invalid duration" in result.stderr


def test_parse_duration() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration(" 2w ") == timedelta(weeks=2)
    assert parse_duration("0.5s") == timedelta(seconds=0.5)
    assert parse_duration("90") == timedelta(seconds=90)
    with pytest.raises(ConfigurationError, match="invalid duration '30 days'"):
        parse_duration("30 days")


# -- cancel, resume, signal --------------------------------------------------------------


def test_cancel_pending_run(store_env: str) -> None:
    result = durable("runs", "cancel", "order-45")
    assert (result.exit_code, result.stdout) == (0, "run 'order-45' cancelled\n")
    assert json.loads(durable("runs", "show", "order-45", "--json").stdout)["status"] == "cancelled"
    again = durable("runs", "cancel", "order-45", "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["message"] == "run 'order-45' was already cancelled"


def test_cancel_completed_run_is_an_error(store_env: str) -> None:
    assert_one_line_error(
        durable("runs", "cancel", "order-42"),
        "run 'order-42' is already completed; there is nothing to cancel",
    )


def test_resume_resets_to_pending_and_the_next_call_resumes(store_env: str) -> None:
    result = durable("runs", "resume", "order-44")
    assert result.exit_code == 0
    assert result.stdout == (
        "run 'order-44' reset to pending: a worker for workflow 'process_order' or the next call with "
        "this run id resumes it from its journal\n"
    )
    assert json.loads(durable("runs", "show", "order-44", "--json").stdout)["status"] == "pending"
    delivered = durable("signal", "order-44", "approve", '{"approved": true}')
    assert (delivered.exit_code, delivered.stdout) == (0, "signal 'approve' delivered to run 'order-44'\n")

    async def call_again() -> tuple[str, list[str]]:
        app = ShopApp(store_env)
        app.charge_attempts = 10
        async with app.wf:
            return await app.process_order(order_id="44"), app.calls

    value, calls = asyncio.run(call_again())
    assert value == "shipped"
    assert calls == ["ship"]  # fetch_order and charge replayed from the journal
    shown = json.loads(durable("runs", "show", "order-44", "--json").stdout)
    assert shown["status"] == "completed"
    assert [s["payload"] for s in shown["signals"]] == [{"approved": True}]


def test_resume_leaves_other_statuses_alone(store_env: str) -> None:
    result = durable("runs", "resume", "order-45")
    assert (result.exit_code, result.stdout) == (
        0,
        "run 'order-45' is pending, not failed or cancelled; left unchanged\n",
    )
    assert_one_line_error(
        durable("runs", "resume", "order-42"), "run 'order-42' is completed; there is nothing to resume"
    )


def test_signal_is_idempotent_per_delivery_id(store_env: str) -> None:
    first = durable("signal", "order-45", "approve", '{"approved": false}', "--delivery-id", "hook-7")
    assert (first.exit_code, first.stdout) == (0, "signal 'approve' delivered to run 'order-45'\n")
    second = durable(
        "signal", "order-45", "approve", '{"approved": false}', "--delivery-id", "hook-7", "--json"
    )
    assert json.loads(second.stdout) == {
        "run_id": "order-45",
        "name": "approve",
        "delivery_id": "hook-7",
        "recorded": False,
    }
    signals = json.loads(durable("runs", "show", "order-45", "--json").stdout)["signals"]
    assert [(s["name"], s["delivery_id"], s["payload"]) for s in signals] == [
        ("approve", "hook-7", {"approved": False})
    ]


def test_signal_unknown_run_needs_create(store_env: str) -> None:
    result = durable("signal", "order-99", "approve", "true")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot deliver signal 'approve': no run 'order-99'")
    created = durable("signal", "order-99", "approve", "true", "--create")
    assert (created.exit_code, created.stdout) == (0, "signal 'approve' delivered to run 'order-99'\n")


# -- prune ----------------------------------------------------------------------------------


def test_prune_deletes_only_finished_runs_older_than_the_cutoff(store_env: str) -> None:
    kept = durable("runs", "prune", "--older-than", "30d")
    assert kept.exit_code == 0
    assert kept.stdout.startswith("deleted 0 run(s) (cancelled, completed, failed) last updated before ")
    dry = durable("runs", "prune", "--older-than", "0s", "--dry-run", "--json")
    assert json.loads(dry.stdout)["matched"] == 4
    assert [r["run_id"] for r in json.loads(durable("runs", "list", "--json").stdout)] == RUN_IDS

    result = durable("runs", "prune", "--older-than", "0s")
    assert result.exit_code == 0
    assert result.stdout.startswith("deleted 4 run(s) (cancelled, completed, failed) last updated before ")
    assert lines(result.stderr) == ["deleting runs: 0/4", "deleting runs: 4/4"]
    assert [r["run_id"] for r in json.loads(durable("runs", "list", "--json").stdout)] == ["order-45"]
    assert durable("runs", "show", "order-42").exit_code == 1


def test_prune_by_status(store_env: str) -> None:
    result = durable("runs", "prune", "--older-than", "0s", "--status", "failed", "--quiet", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["deleted"] == 1
    remaining = [r["run_id"] for r in json.loads(durable("runs", "list", "--json").stdout)]
    assert remaining == ["order-45", "report-2024-05-01", "order-44", "order-42"]
    refused = durable("runs", "prune", "--older-than", "0s", "--status", "pending")
    assert refused.exit_code == 2


async def test_workflow_prune(tmp_path: Path) -> None:
    app = ShopApp(f"sqlite:///{tmp_path / 'api.db'}")
    async with app.wf as wf:
        app.charge_attempts = 10
        await app.daily_report(day="d1")
        await app.process_order.start(order_id="50")
        assert await wf.prune(timedelta(days=1)) == 0
        assert await wf.prune(0) == 1
        assert [r.run_id for r in await wf.list_runs()] == ["order-50"]
        with pytest.raises(ConfigurationError, match="must be >= 0"):
            await wf.prune(-1)


# -- help and the console script --------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["plugins"],
        ["stores"],
        ["runs"],
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "cancel"],
        ["runs", "resume"],
        ["runs", "prune"],
        ["signal"],
        ["ui"],
    ],
)
def test_help_everywhere(command: list[str]) -> None:
    result = durable(*command, "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: durable {' '.join(command)}".rstrip() + " ")


@pytest.fixture
def console_script() -> Iterator[str]:
    script = Path(sys.executable).with_name("durable")
    if not script.exists():
        found = shutil.which("durable")
        if found is None:
            pytest.skip("the durable console script is not installed in this environment")
        script = Path(found)
    yield str(script)


def test_console_script_end_to_end(console_script: str, shop_db: Path) -> None:
    env = {**os.environ, "DURABLE_STORE": f"sqlite:///{shop_db}"}
    env.pop("DURABLE_DEBUG", None)
    ok = subprocess.run(
        [console_script, "runs", "list", "--status", "failed"], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert lines(ok.stdout)[1].split()[:3] == ["order-43", "process_order", "failed"]
    bad = subprocess.run([console_script, "runs", "show", "nope"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr == f"error: no run 'nope' in <SQLiteStore {str(shop_db)!r}>\n"
