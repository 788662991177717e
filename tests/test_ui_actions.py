"""``durable ui``: paging, counts, filters in the URL, the family tree, and actions.

Actions (cancel, resume, signal) are refused without ``--allow-actions``, without this process's
token, and from another origin (checked over HTTP and from a real page on another origin in
Chromium); each one is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from test_cli import RUN_IDS
from test_ui import get, page  # noqa: F401 - page is a fixture used below

from durable import Workflow
from durable._records import RunStatus
from durable._ui import UIServer
from durable.store import Store


def post(
    server: UIServer,
    fields: dict[str, str],
    *,
    origin: str | None = "same",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    conn = HTTPConnection("127.0.0.1", server.port, timeout=10)
    sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    if origin == "same":
        sent["Origin"] = f"http://127.0.0.1:{server.port}"
    elif origin is not None:
        sent["Origin"] = origin
    conn.request("POST", "/api/action", body=urllib.parse.urlencode(fields).encode(), headers=sent)
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def stored(server: UIServer, run_id: str) -> Any:
    store: Store = server._require_store()
    return server.call(store.get_run(run_id))


@pytest.fixture
def acting(shop_db: Path) -> Iterator[UIServer]:
    with UIServer(f"sqlite:///{shop_db}", port=0, poll_interval=0.3, allow_actions=True) as ui:
        yield ui


@pytest.fixture
def read_only(shop_db: Path) -> Iterator[UIServer]:
    with UIServer(f"sqlite:///{shop_db}", port=0, poll_interval=0.3) as ui:
        yield ui


# -- actions over HTTP ---------------------------------------------------------------------


def test_without_the_flag_a_post_is_refused(read_only: UIServer) -> None:
    _, _, config = get(read_only, "/api/config")
    assert (config["actions"], config["token"]) == (False, None)
    status, body = post(
        read_only, {"action": "cancel", "run_id": "order-45", "token": read_only.actions.token}
    )
    assert (status, body) == (403, {"error": "actions are off: start durable ui with --allow-actions"})
    assert stored(read_only, "order-45").status is RunStatus.PENDING


def test_cross_site_and_tokenless_posts_are_refused_and_logged(
    acting: UIServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = acting.actions.token
    cancel = {"action": "cancel", "run_id": "order-45", "token": token}
    caplog.set_level(logging.INFO, logger="durable.ui")
    assert post(acting, cancel, origin="http://evil.example") == (
        403,
        {"error": "cross-site request refused (Origin 'http://evil.example')"},
    )
    assert post(acting, cancel, origin=None)[0] == 403
    assert post(acting, cancel, origin=f"http://localhost:{acting.port}")[0] == 403  # not this Host
    assert post(acting, cancel, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert post(acting, {**cancel, "token": "guess"}) == (
        403,
        {"error": "missing or wrong action token (reload the page)"},
    )
    assert post(acting, {"action": "cancel", "run_id": "order-45"})[0] == 403
    assert stored(acting, "order-45").status is RunStatus.PENDING
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 6
    assert refusals[0] == (
        "action 'cancel' on run 'order-45' refused from 127.0.0.1: "
        "cross-site request refused (Origin 'http://evil.example')"
    )

    caplog.clear()
    status, body = post(acting, cancel)
    assert (status, body["ok"], body["message"]) == (200, True, "run 'order-45' cancelled")
    assert body["run"]["status"] == "cancelled"
    assert stored(acting, "order-45").status is RunStatus.CANCELLED
    assert [r.getMessage() for r in caplog.records] == [
        "action 'cancel' on run 'order-45' from 127.0.0.1",
        "action 'cancel' on run 'order-45' from 127.0.0.1: run 'order-45' cancelled",
    ]


def test_resume_and_signal_actions(acting: UIServer) -> None:
    token = acting.actions.token
    status, body = post(acting, {"action": "resume", "run_id": "order-43", "token": token})
    assert (status, body["ok"]) == (200, True)
    assert stored(acting, "order-43").status is RunStatus.PENDING
    status, body = post(acting, {"action": "resume", "run_id": "order-42", "token": token})
    assert (status, body["ok"]) == (200, False)
    assert body["message"] == "run 'order-42' is completed, not failed or cancelled; left unchanged"

    signal = {"action": "signal", "run_id": "order-45", "token": token, "name": "approve"}
    status, body = post(acting, {**signal, "payload": '{"by": "ui", "n": [1, 2]}', "delivery_id": "d1"})
    assert (status, body["ok"], body["message"]) == (
        200,
        True,
        "signal 'approve' delivered to run 'order-45'",
    )
    assert post(acting, {**signal, "payload": "{}", "delivery_id": "d1"})[1]["ok"] is False  # same id
    signals = acting.call(acting._require_store().list_signals("order-45"))
    assert [(s.name, s.delivery_id, json.loads(s.payload)) for s in signals] == [
        ("approve", "d1", {"by": "ui", "n": [1, 2]})
    ]

    assert post(acting, {**signal, "payload": "{nope"})[0] == 400
    assert post(acting, {"action": "signal", "run_id": "order-45", "token": token})[0] == 400  # no name
    assert post(acting, {"action": "explode", "run_id": "order-45", "token": token})[0] == 400
    status, body = post(acting, {"action": "cancel", "run_id": "nope", "token": token})
    assert status == 404 and "no run 'nope'" in body["error"]


def test_a_large_form_is_refused_before_it_is_read(acting: UIServer) -> None:
    conn = HTTPConnection("127.0.0.1", acting.port, timeout=10)
    conn.putrequest("POST", "/api/action")
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Content-Length", str(2_000_000))
    conn.putheader("Origin", f"http://127.0.0.1:{acting.port}")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


# -- paging, counts, time filter, tree -------------------------------------------------------


def test_keyset_pages_walk_the_whole_listing(read_only: UIServer) -> None:
    seen: list[str] = []
    path = "/api/runs?limit=2"
    pages = 0
    while True:
        status, _, data = get(read_only, path)
        assert status == 200
        pages += 1
        seen += [r["run_id"] for r in data["runs"]]
        if data["next"] is None:
            break
        cursor = data["next"]
        assert cursor["run_id"] == data["runs"][-1]["run_id"]
        query = {"limit": 2, "after_created": repr(cursor["created_at"]), "after_id": cursor["run_id"]}
        path = "/api/runs?" + urllib.parse.urlencode(query)
    assert (seen, pages) == (RUN_IDS, 3)
    assert get(read_only, "/api/runs?after_id=order-44")[0] == 400  # half a cursor
    assert get(read_only, "/api/runs?after_created=nan&after_id=x")[0] == 400


def test_counts_per_status_and_time_filter(read_only: UIServer) -> None:
    _, _, data = get(read_only, "/api/counts")
    assert data["total"] == 5 and data["counts_capped"] is False
    assert {k: v for k, v in data["counts"].items() if v} == {
        "completed": 2,
        "failed": 1,
        "cancelled": 1,
        "pending": 1,
    }
    _, _, orders = get(read_only, "/api/counts?prefix=order-")
    assert orders["total"] == 4
    created = {r["run_id"]: r["created_at"] for r in get(read_only, "/api/runs")[2]["runs"]}
    since = created["order-44"]
    _, _, recent = get(read_only, f"/api/runs?since={since!r}")
    assert [r["run_id"] for r in recent["runs"]] == RUN_IDS[:3]
    _, _, older = get(read_only, f"/api/runs?until={since!r}")
    assert [r["run_id"] for r in older["runs"]] == RUN_IDS[3:]
    assert get(read_only, "/api/runs?since=yesterday")[0] == 400


@pytest.fixture
def family_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'family.db'}"
    wf = Workflow("family", db=url)

    @wf.workflow
    async def leaf(n: int) -> int:
        return n

    @wf.workflow
    async def middle(n: int) -> int:
        return await leaf(n) + 1

    @wf.workflow(id="top-{n}")
    async def top(n: int) -> int:
        return await middle(n) + await leaf(n)

    async def fill() -> None:
        async with wf:
            assert await top(n=1) == 3

    asyncio.run(fill())
    return url


def test_tree_shows_the_whole_family_from_any_member(family_db: str) -> None:
    with UIServer(family_db, port=0) as ui:
        _, _, runs = get(ui, "/api/runs")
        ids = sorted(r["run_id"] for r in runs["runs"])
        assert len(ids) == 4 and ids[0] == "top-1"
        deepest = max(ids, key=lambda i: i.count("/"))
        status, _, tree = get(ui, "/api/tree?id=" + urllib.parse.quote(deepest))
        assert status == 200

        def shape(node: dict[str, Any]) -> Any:
            return [node["run_id"], node["status"], [shape(c) for c in node["children"]]]

        root = tree["root"]
        assert root["run_id"] == "top-1"
        assert len(root["children"]) == 2
        assert sum(len(c["children"]) for c in root["children"]) == 1
        assert deepest in json.dumps(shape(root))
        assert get(ui, "/api/tree?id=nope")[0] == 404


# -- in Chromium -------------------------------------------------------------------------------


@pytest.fixture
def server(acting: UIServer) -> UIServer:
    return acting  # the `page` fixture of test_ui takes `server`


def test_page_cancels_and_signals_a_run(server: UIServer, page: Any) -> None:  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    page.goto(server.url + "#run=order-45")
    page.wait_for_selector("#actions:not([hidden])")
    assert page.locator("#run-status").inner_text() == "pending"
    page.fill('#action-signal input[name="name"]', "approve")
    page.fill('#action-signal input[name="payload"]', '{"by": "browser"}')
    page.click("#action-signal button")
    expect(page.locator("#action-result")).to_have_text("signal 'approve' delivered to run 'order-45'")
    signals = server.call(server._require_store().list_signals("order-45"))
    assert [(s.name, json.loads(s.payload)) for s in signals] == [("approve", {"by": "browser"})]

    page.click("#action-cancel button")
    expect(page.locator("#action-result")).to_have_text("run 'order-45' cancelled")
    expect(page.locator("#run-status")).to_have_text("cancelled")
    assert stored(server, "order-45").status is RunStatus.CANCELLED
    expect(page.locator("#action-resume button")).to_be_enabled()
    expect(page.locator("#action-cancel button")).to_be_disabled()


def test_page_on_another_origin_cannot_act(
    server: UIServer,
    page: Any,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A page served from another origin posts a form, the right token included (as if it had
    leaked): the Origin check refuses it."""
    caplog.set_level(logging.INFO, logger="durable.ui")
    fields = {"action": "cancel", "run_id": "order-45", "token": server.actions.token}
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    evil = (
        f'<form id="f" method="POST" action="{server.url}api/action">{inputs}</form>'
        "<script>document.getElementById('f').submit()</script>"
    ).encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(evil)))
            self.end_headers()
            self.wfile.write(evil)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        # Its own context: the refusal's 403 is expected there, not a fault of the viewer's page.
        context = page.context.browser.new_context()
        attacker = context.new_page()
        with attacker.expect_response(lambda r: r.url.endswith("/api/action")) as answer:
            attacker.goto(f"http://127.0.0.1:{other.server_address[1]}/")
        assert answer.value.status == 403
        context.close()
    finally:
        other.shutdown()
        other.server_close()
    assert stored(server, "order-45").status is RunStatus.PENDING
    refusals = [r.getMessage() for r in caplog.records]
    assert refusals == [
        f"action 'cancel' on run 'order-45' refused from 127.0.0.1: cross-site request refused "
        f"(Origin 'http://127.0.0.1:{other.server_address[1]}')"
    ]


def test_page_keeps_filters_and_pages_in_the_url(shop_db: Path, page: Any) -> None:  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    rows = page.locator("#runs tbody tr")
    with UIServer(f"sqlite:///{shop_db}", port=0, poll_interval=0.3, page_size=2) as ui:
        page.goto(ui.url + "#prefix=order-")
        expect(rows).to_have_count(2)
        assert page.input_value("#filter-prefix") == "order-"
        assert page.locator('#counts a[data-count="all"] .n').inner_text() == "4"
        page.click("#page-next")
        expect(rows.first).to_have_attribute("data-run-id", "order-43")
        assert [rows.nth(i).get_attribute("data-run-id") for i in range(rows.count())] == [
            "order-43",
            "order-42",
        ]
        assert "after_id=order-44" in page.url and "prefix=order-" in page.url
        expect(page.locator("#page-next")).to_be_hidden()
        page.go_back()
        expect(rows.first).to_have_attribute("data-run-id", "order-45")

        page.click('#counts a[data-count="failed"]')
        expect(rows).to_have_count(1)
        assert "status=failed" in page.url
        page.reload()
        expect(rows).to_have_count(1)
        assert page.input_value("#filter-status") == "failed"

        page.select_option("#filter-age", "1h")
        assert "age=1h" in page.url
        expect(rows).to_have_count(1)
        rows.first.locator("a").click()
        page.locator("#run-id").wait_for()
        expect(page.locator("#run-status")).to_have_text("failed")
        expect(page.locator("#actions")).to_be_hidden()  # a read-only viewer offers no action
        page.click("#back")
        expect(rows).to_have_count(1)
        assert page.input_value("#filter-status") == "failed"


@pytest.fixture
def jobs_db(tmp_path: Path) -> str:
    """Seven pending runs ``job-0``..``job-6``; then, written as a killed executor or damage
    would leave them: 0, 2, 4 and 6 running under a lease that ran out (read as interrupted),
    3 with a status no release writes (corrupt)."""
    path = tmp_path / "jobs.db"
    wf = Workflow("jobs", db=f"sqlite:///{path}")

    @wf.workflow(id="job-{n}")
    async def job(n: int) -> int:
        return n

    async def fill() -> None:
        async with wf:
            for n in range(7):
                await job.start(n=n)
                await asyncio.sleep(0.002)  # distinct creation times: a certain listing order

    asyncio.run(fill())
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "UPDATE runs SET status = 'running', owner = 'gone-host:1', lease_expires_at = 1"
            " WHERE run_id = ?",
            [(f"job-{n}",) for n in (0, 2, 4, 6)],
        )
        conn.execute("UPDATE runs SET status = 'bogus' WHERE run_id = 'job-3'")
    conn.close()
    return f"sqlite:///{path}"


def test_interrupted_and_corrupt_runs_are_counted_filtered_and_paged(
    jobs_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import durable._inspect

    monkeypatch.setattr(durable._inspect, "PAGE_SIZE", 2)  # several store pages per viewer page
    with UIServer(jobs_db, port=0) as ui:
        _, _, counts = get(ui, "/api/counts")
        assert (counts["total"], counts["counts"]["interrupted"], counts["counts"]["corrupt"]) == (7, 4, 1)
        assert counts["counts"]["pending"] == 2 and counts["counts"]["running"] == 0

        seen: list[str] = []
        path = "/api/runs?status=interrupted&limit=3"
        while True:
            data = get(ui, path)[2]
            seen += [r["run_id"] for r in data["runs"]]
            assert all(
                r["status"] == "interrupted" and r["last_owner"] == "gone-host:1" for r in data["runs"]
            )
            if data["next"] is None:
                break
            cursor = {"after_created": repr(data["next"]["created_at"]), "after_id": data["next"]["run_id"]}
            path = "/api/runs?status=interrupted&limit=3&" + urllib.parse.urlencode(cursor)
        assert seen == ["job-6", "job-4", "job-2", "job-0"]
        corrupt = get(ui, "/api/runs?status=corrupt")[2]["runs"]
        assert [(r["run_id"], r["status"]) for r in corrupt] == [("job-3", "corrupt")]
        both = get(ui, "/api/runs?status=pending&status=corrupt")[2]["runs"]
        assert [r["run_id"] for r in both] == ["job-5", "job-3", "job-1"]


def test_the_ui_command_with_allow_actions_logs_each_action_on_stderr(shop_db: Path) -> None:
    command = [sys.executable, "-c", "from durable.cli import main; main()", "ui"]
    args = ["--store", f"sqlite:///{shop_db}", "--port", "0", "--allow-actions"]
    process = subprocess.Popen(command + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "(actions allowed; Ctrl+C stops it)" in banner
        url = banner.split(" at ", 1)[1].split(" ", 1)[0]
        port = int(url.rsplit(":", 1)[1].strip("/"))
        conn = HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/config")
        token = json.loads(conn.getresponse().read())["token"]
        form = urllib.parse.urlencode({"action": "cancel", "run_id": "order-45", "token": token})
        for origin in ("http://evil.example", f"http://127.0.0.1:{port}"):
            conn.request(
                "POST",
                "/api/action",
                body=form,
                headers={"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"},
            )
            conn.getresponse().read()
        conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    logged = [line.split(" durable ui: ", 1)[1] for line in err.splitlines() if " durable ui: " in line]
    assert logged == [
        "action 'cancel' on run 'order-45' refused from 127.0.0.1: "
        "cross-site request refused (Origin 'http://evil.example')",
        "action 'cancel' on run 'order-45' from 127.0.0.1",
        "action 'cancel' on run 'order-45' from 127.0.0.1: run 'order-45' cancelled",
    ]


def test_page_draws_the_family_tree(family_db: str, page: Any) -> None:  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    with UIServer(family_db, port=0, poll_interval=0.3) as ui:
        ids = [r["run_id"] for r in get(ui, "/api/runs")[2]["runs"]]
        deepest = max(ids, key=lambda i: i.count("/"))
        page.goto(ui.url + "#run=" + urllib.parse.quote(deepest, safe=""))
        nodes = page.locator("#tree li")
        expect(nodes).to_have_count(4)
        assert nodes.first.get_attribute("data-run-id") == "top-1"
        assert page.locator("#tree li.current").get_attribute("data-run-id") == deepest
        # The deepest run sits two levels under the root.
        assert page.locator(f'#tree > ul > li > ul > li > ul > li[data-run-id="{deepest}"]').count() == 1
        page.locator('#tree a:text-is("top-1")').click()
        expect(page.locator("#run-id")).to_have_text("top-1")
        expect(page.locator("#tree li.current")).to_have_attribute("data-run-id", "top-1")
