"""``durable ui``: the JSON endpoints, and the page itself in a real headless Chromium.

The browser tests need Debian's ``chromium`` package and the ``playwright`` Python
package (Playwright's own browser download is not used)::

    apt-get install -y chromium
    pip install playwright

Set ``DURABLE_UI_SCREENSHOT=docs/ui-run.png`` to refresh the screenshot kept in the docs.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from test_cli import RUN_IDS, durable

from durable._ui import UIServer

CHROMIUM = os.environ.get("DURABLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def server(shop_db: Path) -> Iterator[UIServer]:
    with UIServer(f"sqlite:///{shop_db}", port=0, poll_interval=0.3) as ui:
        yield ui


def get(
    server: UIServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(server.url.rstrip("/") + path, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            status, got = response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        body, status, got = exc.read(), exc.code, dict(exc.headers)
    is_json = got.get("Content-Type", "").startswith("application/json")
    return status, got, json.loads(body) if is_json else body.decode()


# -- the JSON API ------------------------------------------------------------------------


def test_runs_endpoint_lists_newest_first_with_filters(server: UIServer) -> None:
    status, headers, data = get(server, "/api/runs")
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert [r["run_id"] for r in data["runs"]] == RUN_IDS
    _, _, failed = get(server, "/api/runs?status=failed&status=cancelled")
    assert [r["run_id"] for r in failed["runs"]] == ["order-44", "order-43"]
    _, _, page = get(server, "/api/runs?prefix=order-&limit=2&offset=1")
    assert [r["run_id"] for r in page["runs"]] == ["order-44", "order-43"]
    _, _, reports = get(server, "/api/runs?workflow=daily_report")
    assert [r["run_id"] for r in reports["runs"]] == ["report-2024-05-01"]


def test_run_endpoint_is_the_cli_timeline(
    server: UIServer, shop_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, data = get(server, "/api/run?id=order-42")
    assert status == 200
    monkeypatch.setenv("DURABLE_STORE", f"sqlite:///{shop_db}")
    cli_view = json.loads(durable("runs", "show", "order-42", "--json").stdout)
    for volatile in ("observed_at", "end"):
        data.pop(volatile), cli_view.pop(volatile)
    assert data == cli_view
    assert [s["key"] for s in data["steps"]] == ["fetch_order", "charge", "durable:signal@approve", "ship"]


def test_errors_are_json(server: UIServer) -> None:
    status, _, data = get(server, "/api/run?id=nope")
    assert status == 404
    assert data == {
        "error": f"no run 'nope' in <SQLiteStore {server.store_url.removeprefix('sqlite:///')!r}>"
    }
    assert get(server, "/api/run")[0] == 400
    assert get(server, "/api/runs?status=bogus")[0] == 400
    assert get(server, "/api/runs?limit=x")[0] == 400
    assert get(server, "/nowhere")[0] == 404


def test_read_only_and_local_only(server: UIServer) -> None:
    conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/api/runs", body=b"{}")
    assert conn.getresponse().status == 501  # no handler for anything but GET
    conn.close()
    status, _, data = get(server, "/api/runs", headers={"Host": "evil.example:8765"})
    assert (status, data) == (403, {"error": "unexpected Host header"})
    status, headers, page = get(server, "/")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert '<script src="/app.js"></script>' in page


def test_ui_command_reports_unusable_store_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    result = durable("ui", "--store", f"sqlite:///{missing}", "--port", "0")
    assert result.exit_code == 1
    assert result.stderr == f"error: store file {str(missing)!r} does not exist (check --store)\n"


# -- the page in a real browser -------------------------------------------------------


@pytest.fixture
def page(server: UIServer) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set DURABLE_TEST_CHROMIUM)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="pip install playwright to run browser tests"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            yield page
            # An unknown run is a 404 the page reports itself; anything else is a bug.
            assert [e for e in errors if "status of 404" not in e] == []
        finally:
            browser.close()


def _in_thread(fn: Any) -> None:
    # The sync Playwright API owns this thread's event loop; the CLI runs its own elsewhere.
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join(timeout=30)


def test_page_lists_runs_and_refreshes_live(server: UIServer, shop_db: Path, page: Any) -> None:
    page.goto(server.url)
    rows = page.locator("#runs tbody tr")
    rows.first.wait_for()
    assert rows.count() == 5
    assert [rows.nth(i).get_attribute("data-run-id") for i in range(5)] == RUN_IDS
    assert page.locator('#runs tr[data-run-id="order-43"] .err').inner_text() == (
        "ValueError: no address for order 43"
    )
    assert page.locator('#runs tr[data-run-id="order-45"]').get_attribute("data-status") == "pending"

    # Another process changes the store: the open page shows it without a reload.
    _in_thread(lambda: durable("runs", "cancel", "order-45", "--store", f"sqlite:///{shop_db}"))
    page.wait_for_selector('#runs tr[data-run-id="order-45"][data-status="cancelled"]', timeout=5000)

    page.select_option("#filter-status", "failed")
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-run-id") == "order-43"


def test_page_draws_the_step_timeline(server: UIServer, page: Any, tmp_path: Path) -> None:
    page.goto(server.url)
    page.locator('#runs a:text-is("order-42")').click()
    bars = page.locator("svg#timeline rect.bar[data-key]")
    bars.first.wait_for()
    assert page.locator("#run-id").inner_text() == "order-42"
    assert page.locator("#run-status").inner_text() == "completed"
    keys = [bars.nth(i).get_attribute("data-key") for i in range(bars.count())]
    assert keys == ["fetch_order", "charge", "durable:signal@approve", "ship"]
    assert bars.nth(1).get_attribute("class") == "bar completed retried"
    assert bars.nth(2).get_attribute("class") == "bar signal"

    # Bars are laid out in time: each starts where (or after) the previous one ended. Read in one
    # script turn, once the bars are laid out: the page redraws itself live, and a bar read
    # between two redraws, or before layout, has no box.
    boxes = page.wait_for_function(
        "() => { const boxes = [...document.querySelectorAll('svg#timeline rect.bar[data-key]')]"
        ".map((bar) => { const box = bar.getBoundingClientRect(); return {x: box.x, width: box.width}; });"
        " return boxes.length > 0 && boxes.every((box) => box.width > 0) ? boxes : null; }"
    ).json_value()
    assert len(boxes) == 4
    for before, after in itertools.pairwise(boxes):
        assert after["x"] >= before["x"] + before["width"] - 2
    # The signal wait (about 0.15 s of a 0.45 s run) is drawn wider than the 50 ms fetch.
    assert boxes[2]["width"] > boxes[0]["width"]

    steps = page.locator("#steps tbody tr")
    assert steps.count() == 4
    assert "after 2 failed attempt(s)" in steps.nth(1).inner_text()
    assert page.locator("#signals tbody tr td").nth(1).inner_text() == "approve"

    target = tmp_path / "ui-run.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    keep = os.environ.get("DURABLE_UI_SCREENSHOT")
    if keep:
        shutil.copy(target, keep)


def test_page_shows_a_failed_run_with_its_traceback(server: UIServer, page: Any) -> None:
    page.goto(server.url + "#run=order-43")
    page.locator("svg#timeline rect.bar[data-key]").first.wait_for()
    assert page.locator("#run-status").inner_text() == "failed"
    assert page.locator('svg#timeline rect.bar[data-key="ship"]').get_attribute("class") == "bar failed"
    assert page.locator("#run-error").is_visible()
    assert "ValueError: no address for order 43" in page.locator("#run-traceback").inner_text()


def test_page_escapes_hostile_run_ids(server: UIServer, page: Any) -> None:
    hostile = '<img src=x onerror="window.pwned=1">/"&'
    page.goto(server.url + "#run=" + urllib.parse.quote(hostile, safe=""))
    page.wait_for_selector("#problem:not([hidden])")
    assert (
        page.locator("#problem").inner_text()
        == f"no run {hostile!r} in <SQLiteStore {server.store_url[10:]!r}>"
    )
    assert page.evaluate("window.pwned === undefined")
