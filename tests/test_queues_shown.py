"""A run's queue, priority, partition and not-before time are shown where its status is: the
listing rows and timeline that ``durable runs list/show --json`` and the viewer print (issue 17)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from durable import Workflow
from durable._inspect import load_timeline, summarize
from durable_memory import InMemoryStore


async def test_a_queued_run_shows_its_queue_entry_in_listings_and_its_timeline() -> None:
    store = InMemoryStore()
    wf = Workflow("shop", db=store)
    wf.queue("llm", concurrency=2)

    @wf.workflow(id="summarise-{doc}", queue="llm")
    async def summarise(doc: str) -> str:
        return doc

    @wf.workflow(id="plain-{doc}")
    async def plain(doc: str) -> str:
        return doc

    before = time.time()
    await summarise.options(priority=3, delay=60, partition_key="tenant-7").start(doc="7")
    await plain.start(doc="8")
    rows = {row.run_id: row.to_json() for row in await summarize(store, await wf.list_runs())}
    queue = rows["summarise-7"]["queue"]
    assert queue["queue"] == "llm" and queue["priority"] == 3 and queue["partition_key"] == "tenant-7"
    assert before + 59 < queue["not_before"] < time.time() + 61
    assert queue["started_at"] is None
    assert rows["plain-8"]["queue"] is None
    timeline = (await load_timeline(store, "summarise-7")).to_json()
    assert timeline["queue"] == queue
    await wf.close()


def test_the_viewer_page_shows_a_runs_queue_entry(tmp_path: Path) -> None:
    pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")
    from test_ui import CHROMIUM, CHROMIUM_ARGS

    from durable._ui import UIServer

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set DURABLE_TEST_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    url = f"sqlite:///{tmp_path / 'q.db'}"

    async def record() -> None:
        wf = Workflow("shop", db=url)
        wf.queue("llm", concurrency=2)

        @wf.workflow(id="summarise-{doc}", queue="llm")
        async def summarise(doc: str) -> str:
            return doc

        async with wf:
            await summarise.options(priority=3, delay=3600, partition_key="tenant-7").start(doc="7")

    asyncio.run(record())
    with UIServer(url, port=0) as ui, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(ui.url)
            row_queue = page.locator('#runs tbody tr[data-run-id="summarise-7"] .queue')
            sync_api.expect(row_queue).to_have_text("on llm")
            page.goto(ui.url + "#run=summarise-7")
            shown = page.locator('#run-facts dd[data-fact="queue"]')
            sync_api.expect(shown).to_contain_text("llm, priority 3, partition tenant-7, not before")
        finally:
            browser.close()
