"""``durable ui``: a run's code versions, a fork's origin, events and streams, the version filter,
and the Origin check behind an HTTPS proxy; over HTTP and in a real Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from test_ui import get, page  # noqa: F401 - page is a fixture used below
from test_ui_actions import post, stored

from durable import RunStatus, Workflow
from durable._inspect import load_timeline
from durable._ui import UIServer
from durable.store import Capability
from durable_memory import InMemoryStore

V1, V2 = "2026.12.1", "2026.12.2"


def shop(url: str, version: str) -> tuple[Workflow, Any]:
    wf = Workflow("shop", db=url, version=version)

    @wf.task
    async def reserve() -> str:
        return "r"

    @wf.task
    async def charge() -> str:
        return "c"

    @wf.workflow(id="order-{n}")
    async def order(n: int) -> str:
        await reserve()
        await wf.set_event("stage", "reserved")
        await wf.write_stream("log", "reserved")
        await wf.signal("go")
        await charge()
        await wf.write_stream("log", "charged")
        await wf.close_stream("log")
        return "done"

    return wf, order


@pytest.fixture(scope="module")
def versions_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """order-1 created by 2026.12.1 (interrupted at its signal wait), resumed and finished by
    2026.12.2, then forked by 2026.12.2 from its step ``charge``; order-2 created by 2026.12.2."""
    path = tmp_path_factory.mktemp("versions") / "versions.db"
    url = f"sqlite:///{path}"

    async def record() -> None:
        old, order = shop(url, V1)
        running = asyncio.ensure_future(order(1))
        while (run := await old.get_run("order-1")) is None or run.status is not RunStatus.WAITING:
            await asyncio.sleep(0.01)
        running.cancel()  # the process stops: interrupted, resumable
        with pytest.raises(asyncio.CancelledError):
            await running
        await old.close()
        new, order = shop(url, V2)
        await new.complete("order-1", "go", True)
        assert await new.resume("order-1") == "done"
        await new.fork("order-1", from_step="charge", new_run_id="order-1-again")
        second = asyncio.ensure_future(order(2))
        while (run := await new.get_run("order-2")) is None or run.status is not RunStatus.WAITING:
            await asyncio.sleep(0.01)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await new.close()

    asyncio.run(record())
    return path


@pytest.fixture
def versions_db(versions_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "versions.db"
    path.write_bytes(versions_template.read_bytes())
    return path


@pytest.fixture
def viewer(versions_db: Path) -> Iterator[UIServer]:
    with UIServer(f"sqlite:///{versions_db}", port=0, poll_interval=0.3) as ui:
        yield ui


@pytest.fixture
def server(viewer: UIServer) -> UIServer:
    """The viewer the ``page`` fixture (test_ui) waits for."""
    return viewer


# -- the JSON API ----------------------------------------------------------------------------


def test_a_run_shows_its_version_the_versions_that_executed_it_and_its_outputs(viewer: UIServer) -> None:
    status, _, run = get(viewer, "/api/run?id=order-1")
    assert status == 200
    assert (run["version"], run["versions"], run["forked_from"]) == (V1, [V1, V2], None)
    assert [(s["key"], s["version"]) for s in run["steps"] if s["key"] in ("reserve", "charge")] == [
        ("reserve", V1),
        ("charge", V2),
    ]
    assert run["events"] == {"stage": "reserved"}
    assert run["streams"] == [{"key": "log", "items": 2, "closed": True}]


def test_a_fork_shows_where_it_came_from(viewer: UIServer) -> None:
    _, _, fork = get(viewer, "/api/run?id=order-1-again")
    assert fork["forked_from"]["run_id"] == "order-1"
    assert fork["forked_from"]["from_step"] == "charge"
    assert fork["forked_from"]["copied"] >= 4  # the steps before charge (versions, reserve, event, stream...)


def test_the_list_filters_by_the_version_that_created_a_run(viewer: UIServer) -> None:
    # A fork keeps its original's version (durable._fork: it continues that run).
    _, _, v1 = get(viewer, f"/api/runs?version={V1}")
    assert sorted((r["run_id"], r["version"]) for r in v1["runs"]) == [("order-1", V1), ("order-1-again", V1)]
    _, _, v2 = get(viewer, f"/api/runs?version={V2}")
    assert [r["run_id"] for r in v2["runs"]] == ["order-2"]
    _, _, counts = get(viewer, f"/api/counts?version={V2}")
    assert counts["total"] == 1


async def test_a_store_without_streams_answers_null_outputs() -> None:
    class NoStreams(InMemoryStore):
        capabilities = InMemoryStore.capabilities - {Capability.STREAMS}  # type: ignore[misc]

    store = NoStreams()
    wf = Workflow("plain", db=store)

    @wf.workflow(id="plain")
    async def plain() -> int:
        return 1

    assert await plain() == 1
    details = (await load_timeline(store, "plain")).to_json()
    assert (details["events"], details["streams"], details["versions"]) == (None, None, [])
    await wf.close()


# -- the page in Chromium --------------------------------------------------------------------


def test_page_shows_versions_outputs_and_a_forks_origin(viewer: UIServer, page: Any) -> None:  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    page.goto(viewer.url + "#run=order-1")
    expect(page.locator('#run-facts dd[data-fact="version"]')).to_have_text(V1)
    expect(page.locator('#run-facts dd[data-fact="executed by"]')).to_have_text(f"{V1}, {V2}")
    expect(page.locator('#steps th[data-col="version"]')).to_be_visible()
    rows = page.locator("#steps tbody tr")
    charge = page.locator('#steps tbody tr[data-key="charge"] td[data-col="version"]')
    expect(charge).to_have_text(V2)
    assert rows.count() == 9
    expect(page.locator('#events tr[data-event="stage"] td').nth(1)).to_have_text('"reserved"')
    expect(page.locator('#streams tr[data-stream="log"]')).to_have_text("log2closed")
    expect(page.locator("#events-empty")).to_be_hidden()

    page.goto(viewer.url + "#run=order-1-again")
    origin = page.locator('#run-facts dd[data-fact="forked from"]')
    expect(origin).to_contain_text("order-1 at step charge")
    origin.locator("a").click()
    expect(page.locator("#run-id")).to_have_text("order-1")
    assert page.url.endswith("#run=order-1")


def test_page_filters_the_list_by_version_and_keeps_it_in_the_url(viewer: UIServer, page: Any) -> None:  # noqa: F811
    expect = pytest.importorskip("playwright.sync_api").expect
    page.goto(viewer.url)
    expect(page.locator("#runs tbody tr")).to_have_count(3)
    page.fill("#filter-version", V2)
    expect(page.locator("#runs tbody tr")).to_have_count(1)
    expect(page.locator("#runs tbody tr").first).to_have_attribute("data-run-id", "order-2")
    assert f"version={V2}" in page.url
    expect(page.locator("#runs tbody tr .version").first).to_have_text(V2)
    page.reload()
    expect(page.locator("#filter-version")).to_have_value(V2)
    expect(page.locator("#runs tbody tr")).to_have_count(1)


# -- the Origin check behind a proxy ---------------------------------------------------------


@pytest.fixture
def proxied(versions_db: Path) -> Iterator[UIServer]:
    with UIServer(
        f"sqlite:///{versions_db}", port=0, allow_actions=True, allowed_hosts=["durable.example.com"]
    ) as ui:
        yield ui


def test_an_https_page_through_a_proxy_may_act(proxied: UIServer) -> None:
    token = proxied.actions.token
    cancel = {"action": "cancel", "run_id": "order-2", "token": token}
    refused = [
        ("https://evil.example", None),
        ("https://durable.example.com.evil.example", None),
        ("ftp://durable.example.com", None),
        (f"https://127.0.0.1:{proxied.port}/path", None),
        (f"http://localhost:{proxied.port}", None),  # neither this Host nor an allowed name
    ]
    for origin, host in refused:
        headers = {} if host is None else {"Host": host}
        status, body = post(proxied, cancel, origin=origin, headers=headers)
        assert (status, body["error"].split(" (")[0]) == (403, "cross-site request refused"), origin
    assert stored(proxied, "order-2").status is RunStatus.WAITING  # its process is gone: interrupted

    # A TLS proxy that passes the browser's Host on: https:// and that Host.
    status, body = post(
        proxied, {**cancel, "action": "signal", "name": "go"}, origin="https://durable.example.com",
        headers={"Host": "durable.example.com"},
    )  # fmt: skip
    assert (status, body["ok"]) == (200, True), body
    # One that sends its own Host (the listening address): the allowed name's page still may.
    status, body = post(
        proxied, cancel, origin="https://durable.example.com", headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert (status, body["message"]) == (200, "run 'order-2' cancelled"), body
    assert stored(proxied, "order-2").status is RunStatus.CANCELLED
    # Plain http to the listening address, as before.
    status, body = post(proxied, {**cancel, "action": "resume"})
    assert status == 200, body
