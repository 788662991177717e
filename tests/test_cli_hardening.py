"""The ``durable`` command against hostile store content and secret-bearing store URLs.

Whoever can write to a store can put anything in a run id, a workflow name, a step key, a
signal name or an error message. None of it may act on the operator's terminal, push the other
columns of a listing away, or make a listing slow; no password in a store URL may be printed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from click.testing import CliRunner, Result

from durable import Workflow, _display, _inspect, _term
from durable._records import ErrorInfo, RunRecord, RunStatus, StepRecord, StepStatus
from durable.cli import cli
from durable.store import redact_text, redact_url
from durable_sqlite import SQLiteStore

EVIL = "\x1b]0;pwned\x07\x1b[2J\rFAKE LINE\x08\x9b31m\u202e\x7f"
"""Sets the terminal title, clears the screen, overwrites the line, C1 CSI, a bidi override, DEL."""
RAW = ("\x1b", "\x07", "\r", "\x08", "\x9b", "\u202e", "\x7f")
LONG_NAME = "w" * 10_000
LONG_ID = "id-" + "x" * 1000


def durable(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_no_raw_controls(text: str) -> None:
    for char in RAW:
        assert char not in text, (char, text[:300])


async def _write_hostile_runs(store: SQLiteStore) -> None:
    """Runs as a foreign writer could leave them, through the store's own API."""
    now = time.time()

    async def run(run_id: str, workflow: str, **fields: Any) -> None:
        record = RunRecord(
            run_id=run_id,
            workflow=workflow,
            status=RunStatus.PENDING,
            inputs=json.dumps({"x": EVIL}),
            inputs_digest="d",
            created_at=now,
            updated_at=now,
        )
        await store.create_run(record)
        lease = await store.claim_run(run_id, "someone", 30)
        assert lease is not None
        await store.save_step(
            lease,
            StepRecord(
                run_id=run_id,
                key="step" + EVIL,
                task="task" + EVIL,
                args_digest="a",
                status=StepStatus.COMPLETED,
                result=json.dumps("value" + EVIL, ensure_ascii=False),
                error=None,
                attempts=1,
                started_at=now,
                finished_at=now + 0.01,
            ),
        )
        await store.update_run(lease, RunStatus.FAILED, release=True, **fields)

    error = ErrorInfo(
        "builtins.ValueError" + EVIL, "boom" + EVIL, "Traceback (most recent call last):\n" + EVIL
    )
    await run("run" + EVIL, "flow" + EVIL, error=error.to_json())
    await store.send_signal("run" + EVIL, "sig" + EVIL, "delivery" + EVIL, json.dumps({"p": EVIL}))
    await run("long-name", LONG_NAME, error=ErrorInfo("builtins.ValueError", "x" * 5000).to_json())
    await run(LONG_ID, "flow")


@pytest.fixture
def hostile_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "hostile.db"

    async def fill() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            await _write_hostile_runs(store)
        finally:
            await store.close()

    asyncio.run(fill())
    url = f"sqlite:///{path}"
    monkeypatch.setenv("DURABLE_STORE", url)
    monkeypatch.delenv("DURABLE_DEBUG", raising=False)
    return url


# -- item 11: control characters are shown, never sent to the terminal --------------------------


def test_runs_list_shows_control_characters_as_escapes(
    hostile_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # wide enough that nothing folds
    result = durable("runs", "list")
    assert result.exit_code == 0, result.output
    assert_no_raw_controls(result.stdout)
    row = next(line for line in result.stdout.splitlines() if line.startswith("run\\x1b"))
    assert "run\\x1b]0;pwned\\x07\\x1b[2J\\rFAKE LINE\\x08\\x9b31m\\u202e\\x7f" in row
    assert "flow\\x1b]0;pwned" in row
    assert "ValueError\\x1b" in row


def test_runs_show_shows_control_characters_as_escapes(hostile_db: str) -> None:
    result = durable("runs", "show", "run" + EVIL)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert_no_raw_controls(out)
    for shown in ("run\\x1b]0;pwned", "flow\\x1b", "step\\x1b", "task\\x1b", "sig\\x1b", "delivery\\x1b"):
        assert shown in out, shown
    assert "boom\\x1b]0;pwned\\x07" in out  # the error row and the traceback
    assert "Traceback (most recent call last):\n\\x1b]0;pwned" in out  # the traceback keeps its lines


def test_json_output_keeps_the_exact_values(hostile_db: str) -> None:
    listed = json.loads(durable("runs", "list", "--json").stdout)
    assert {"run" + EVIL, "long-name", LONG_ID} == {r["run_id"] for r in listed}
    shown = json.loads(durable("runs", "show", "run" + EVIL, "--json").stdout)
    assert shown["workflow"] == "flow" + EVIL
    assert shown["error"]["message"] == "boom" + EVIL
    assert [s["key"] for s in shown["steps"]] == ["step" + EVIL]
    assert [(s["name"], s["delivery_id"]) for s in shown["signals"]] == [("sig" + EVIL, "delivery" + EVIL)]


def test_error_lines_show_control_characters_as_escapes(hostile_db: str) -> None:
    result = durable("runs", "cancel", "nope" + EVIL)
    assert result.exit_code == 1
    assert_no_raw_controls(result.stderr)
    assert "nope\\x1b" in result.stderr


# -- item 11: bounded columns --------------------------------------------------------------------


def test_a_huge_workflow_name_does_not_push_the_other_columns_away(hostile_db: str) -> None:
    result = durable("runs", "list")
    lines = result.stdout.splitlines()
    assert all(len(line) <= 200 for line in lines), max(len(line) for line in lines)
    header = lines[0]
    row = next(line for line in lines if line.startswith("long-name"))
    # Every column starts where the header says, the workflow name is cut with an ellipsis.
    status_at, error_at = header.index("STATUS"), header.index("ERROR")
    assert row[status_at:].startswith("failed")
    assert row[error_at:].startswith("ValueError: xxx") and row.endswith("…")
    assert "w" * 39 + "…" in row and "w" * 41 not in row


def test_a_long_run_id_is_folded_never_cut(hostile_db: str) -> None:
    lines = durable("runs", "list").stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("id-xxx"))
    width = len(lines[first].split()[0])
    assert width <= 100
    pieces: list[str] = []
    for line in lines[first:]:
        piece = line[:width].strip()
        if not piece or not set(piece) <= set("id-x") or (pieces and line.startswith("id-")):
            break
        pieces.append(piece)
    assert "".join(pieces) == LONG_ID
    assert "failed" in lines[first]  # the other cells are on its first line


def test_a_narrow_terminal_narrows_the_table(hostile_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "90")
    lines = durable("runs", "list").stdout.splitlines()
    assert all(len(line) <= 90 for line in lines[:-1]), [len(line) for line in lines]


def test_tables_count_wide_characters_as_two_columns() -> None:
    table = _term.Table(_term.Column("A", 6), _term.Column("B"))
    table.add_row("日本語の名前", "x")
    table.add_row("ab", "y")
    lines = table.lines()
    assert lines[1] == "日本…   x"  # 5 columns: a wide character cannot be split
    assert lines[2] == "ab      y"


def test_visible_escapes_what_a_terminal_acts_on_and_keeps_the_rest() -> None:
    assert _term.visible("plain ascii, ünïcødé, 日本, emoji 🎉") == "plain ascii, ünïcødé, 日本, emoji 🎉"
    assert _term.visible("a\x1b[2Jb\x00c\x9bd\u202ee\ud800") == "a\\x1b[2Jb\\x00c\\x9bd\\u202ee\\ud800"
    assert _term.visible("a\nb\tc") == "a\\nb\\tc"
    assert _term.visible("a\nb\tc\r", newlines=True) == "a\nb\tc\\r"


# -- item 12: large values are cut for display, not decoded ------------------------------------


@pytest.fixture
def big_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    wf = Workflow("big", db=url)

    @wf.task
    async def echo(blob: str) -> str:
        return blob

    @wf.workflow(id="big-1")
    async def big(blob: str) -> int:
        await echo(blob)
        await wf.signal("more", timeout=10)
        return len(blob)

    async def fill() -> None:
        started = asyncio.create_task(big(blob="a" * 5_000_000))
        while (run := await wf.get_run("big-1")) is None or run.status is not RunStatus.WAITING:
            await asyncio.sleep(0.01)
        await wf.complete("big-1", "more", {"blob": "b" * 2_000_000})
        await started
        await wf.close()

    asyncio.run(fill())
    monkeypatch.setenv("DURABLE_STORE", url)
    return url


def test_runs_show_cuts_large_values_and_gives_their_size(
    big_run: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real = _display._decode

    def spy(text: str | None) -> Any:
        decoded.append(len(text or ""))
        return real(text)

    monkeypatch.setattr(_display, "_decode", spy)
    result = durable("runs", "show", "big-1")
    assert result.exit_code == 0, result.output
    assert max(decoded) <= _display.DISPLAY_LIMIT  # nothing large was decoded to be shown
    lines = result.stdout.splitlines()
    assert len(result.stdout) < 5000
    inputs = next(line for line in lines if line.startswith("inputs"))
    assert inputs.startswith('inputs    {"blob":"aaaa')
    assert inputs.endswith("aaa… (5.0 MB)") and len(inputs) <= 200
    step = next(line for line in lines if line.startswith("1  echo"))
    assert step.endswith("… (5.0 MB)")
    signal = next(line for line in lines if "more" in line and "blob" in line)
    assert signal.endswith("… (2.0 MB)")


def test_runs_show_json_still_has_the_whole_values(big_run: str) -> None:
    data = json.loads(durable("runs", "show", "big-1", "--json").stdout)
    assert data["inputs"] == {"blob": "a" * 5_000_000}
    assert data["steps"][0]["result"] == "a" * 5_000_000
    assert data["signals"][0]["payload"] == {"blob": "b" * 2_000_000}
    assert data["omitted"] == []


def test_load_timeline_leaves_out_values_over_the_limit(big_run: str) -> None:
    async def load() -> _inspect.RunTimeline:
        store = SQLiteStore(big_run.removeprefix("sqlite:///"))
        await store.open()
        try:
            return await _inspect.load_timeline(store, "big-1", max_value=_display.DISPLAY_LIMIT)
        finally:
            await store.close()

    timeline = asyncio.run(load())
    data = timeline.to_json()
    # The signal wait's step records the payload it received.
    assert data["omitted"] == ["inputs", "steps[0].result", "steps[1].result", "signals[0].payload"]
    assert data["inputs"] is None and data["steps"][0]["result"] is None
    assert data["result"] == 5_000_000  # small values are there
    assert data["inputs_preview"].endswith("… (5.0 MB)") and len(data["inputs_preview"]) <= 200


# -- item 12: strict JSON ------------------------------------------------------------------------


def test_json_output_is_strict_json_with_nan_and_infinities_as_strings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nan.db'}"
    wf = Workflow("nan", db=url)

    @wf.workflow(id="nan-{x}")
    async def odd(x: float) -> list[float]:
        return [x, float("inf"), float("-inf")]

    async def fill() -> None:
        await odd(x=float("nan"))
        await wf.close()

    asyncio.run(fill())
    result = durable("runs", "show", "nan-nan", "--store", url, "--json")
    assert result.exit_code == 0, result.output

    def refuse(token: str) -> Any:
        raise AssertionError(f"not strict JSON: {token}")

    data = json.loads(result.stdout, parse_constant=refuse)
    assert data["inputs"] == {"x": "NaN"}
    assert data["result"] == ["NaN", "Infinity", "-Infinity"]


# -- item 10: secrets in store URLs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter22@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://user:p%40ss%3Aw0rd@cache.example:6380/3", "rediss://user:***@cache.example:6380/3"),
        ("redis://cache/0?password=hunter22&prefix=app", "redis://cache/0?password=***&prefix=app"),
        (
            "postgresql://app@db/shop?sslpassword=k3y&sslmode=require&token=t0k&secret=s3c",
            "postgresql://app@db/shop?sslpassword=***&sslmode=require&token=***&secret=***",
        ),
        ("postgresql://app:pw@[::1]:5432/db?api_key=abc", "postgresql://app:***@[::1]:5432/db?api_key=***"),
        ("postgresql://u:pw@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        # A password holding an unescaped "/", "#" or "?": the whole user info is hidden.
        ("redis://:pa/ss@cache/0", "redis://***@cache/0"),
        ("redis://:pa#ss@cache/0", "redis://***@cache/0"),
        ("redis://:pa?ss@cache/0", "redis://***@cache/0"),
        # Nothing secret: shown as given.
        ("redis://cache:6379/0?client_name=a@b", "redis://cache:6379/0?client_name=a@b"),
        ("sqlite:///runs.db", "sqlite:///runs.db"),
        ("memory://", "memory://"),
        ("durable.db", "durable.db"),
        ("redis://[::1", "redis://[::1"),
    ],
)
def test_redact_url_hides_netloc_and_query_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_hides_the_url_and_its_secrets_anywhere() -> None:
    url = "redis://:hunter22@cache/0?token=t0ken22"
    text = f"cannot connect to {url}: auth hunter22 refused (token t0ken22)"
    assert (
        redact_text(text, url)
        == "cannot connect to redis://:***@cache/0?token=***: auth *** refused (token ***)"
    )


SECRET_URL = "redis://user:hunter22@127.0.0.1:1/0?password=sekrit22&token=t0ken22"
SECRETS = ("hunter22", "sekrit22", "t0ken22")


def test_workflow_and_store_reprs_hide_passwords() -> None:
    from durable_postgres import PostgresStore
    from durable_redis import RedisStore

    shown = [
        repr(Workflow("app", db=SECRET_URL)),
        repr(RedisStore.from_url(SECRET_URL)),
        repr(Workflow("app", db=SECRET_URL.replace("redis", "postgresql"))),
        repr(PostgresStore.from_url("postgresql://user:hunter22@db/shop?sslpassword=sekrit22")),
    ]
    for text in shown:
        assert not any(secret in text for secret in SECRETS), text
    assert "user:***@127.0.0.1:1/0?password=***&token=***" in shown[0]


def test_configuration_errors_built_from_urls_hide_passwords() -> None:
    from durable.errors import ConfigurationError
    from durable_postgres import PostgresStore

    with pytest.raises(ConfigurationError) as caught:
        PostgresStore.from_url("postgresql://u:hunter22@db/shop?password=sekrit22&min_size=lots")
    assert "min_size" in str(caught.value)
    assert not any(secret in str(caught.value) for secret in SECRETS)


def test_cli_errors_hide_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_OPEN_TIMEOUT", "1")
    for args in (["--store", SECRET_URL], []):
        if not args:
            monkeypatch.setenv("DURABLE_STORE", SECRET_URL)
        result = durable("runs", "list", *args)
        assert result.exit_code == 1
        assert result.stderr.startswith(
            "error: cannot open store redis://user:***@127.0.0.1:1/0?password=***"
        )
        assert not any(secret in result.output for secret in SECRETS), result.output


def test_viewer_config_hides_passwords() -> None:
    from durable._ui import UIServer

    config = UIServer(SECRET_URL).config_json()  # not started: no server needed
    assert config["store"] == "redis://user:***@127.0.0.1:1/0?password=***&token=***"


# -- item 14: start-up imports -------------------------------------------------------------------

HEAVY = ("rich", "aiosqlite", "redis", "hiredis", "asyncpg", "pydantic_ai")


def imported_after(args: list[str], cwd: Path) -> list[str]:
    """Which of ``HEAVY`` a fresh ``durable ARGS`` process has imported when it exits."""
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})),"
        " file=sys.stderr))\n"
        "from durable.cli import main\n"
        f"main({args!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert result.returncode == 0, result.stderr
    listed: list[str] = json.loads(result.stderr.strip().splitlines()[-1].replace("'", '"'))
    return listed


def test_help_imports_no_rendering_library_and_no_store_driver(tmp_path: Path) -> None:
    assert imported_after(["--help"], tmp_path) == []
    assert imported_after(["runs", "--help"], tmp_path) == []


def test_listing_sqlite_runs_imports_only_its_driver(hostile_db: str, tmp_path: Path) -> None:
    assert imported_after(["runs", "list", "--store", hostile_db], tmp_path) == ["aiosqlite"]
    assert imported_after(["plugins"], tmp_path) == []
    assert imported_after(["stores"], tmp_path) == []


def test_a_quick_listing_on_a_terminal_shows_no_bar_and_imports_no_rich(
    hostile_db: str, tmp_path: Path
) -> None:
    import os
    import pty

    report = tmp_path / "modules.txt"
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(report)!r}, 'w').write(repr(sorted("
        f"{{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))))\n"
        "from durable.cli import main\n"
        f"main(['runs', 'list', '--store', {hostile_db!r}])\n"
    )
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "400", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=follower, stderr=follower, env=env)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0, output
    assert report.read_text() == "['aiosqlite']"
    text = output.decode()
    assert "\x1b[1mRUN ID\x1b[0m" in text  # a terminal gets colour, made by durable._term
    assert "\x1b]0;pwned" not in text and "run\\x1b]0;pwned" in text
