"""``durable stream RUN KEY`` and the events and streams of ``durable runs show``, against a real
SQLite file written by real runs; ``ReadOnlyStore`` (replay's) reading them through."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from click.testing import CliRunner, Result

from durable import Workflow
from durable._inspect import load_timeline
from durable._read_only_store import ReadOnlyStore, WriteRefused
from durable.cli import cli
from durable.store import Capability, Lease
from durable_memory import InMemoryStore

DURABLE = str(Path(sys.executable).with_name("durable"))


def durable(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


class FeedApp:
    """A run that writes two items, waits for signal ``more``, writes a third and closes."""

    def __init__(self, url: str) -> None:
        self.wf = wf = Workflow("feed", db=url)

        @wf.workflow(id="feed-{n}")
        async def feed(n: int) -> int:
            await wf.set_event("progress", {"done": 0})
            await wf.write_stream("log", "first line")
            await wf.write_stream("log", {"second": [2, "two"]})
            await wf.set_event("progress", {"done": 2})
            await wf.signal("more")
            await wf.write_stream("log", "third\x1b[31m")
            await wf.close_stream("log")
            await wf.write_stream("other", 1)
            return 3

        self.feed = feed


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FeedApp]:
    feed = FeedApp(f"sqlite:///{tmp_path / 'feed.db'}")
    async with feed.wf:
        yield feed


async def waiting(app: FeedApp) -> asyncio.Task[int]:
    task = asyncio.create_task(app.feed(n=1))
    while (run := await app.wf.get_run("feed-1")) is None or run.status != "waiting":
        await asyncio.sleep(0.01)
    return task


async def finished(app: FeedApp) -> None:
    task = await waiting(app)
    await app.wf.complete("feed-1", "more", None)
    assert await task == 3


async def test_stream_prints_each_item_with_its_offset(app: FeedApp, tmp_path: Path) -> None:
    await finished(app)
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    result = await asyncio.to_thread(durable, "stream", "feed-1", "log", "--store", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        '0  "first line"',
        '1  {"second": [2, "two"]}',
        '2  "third\\u001b[31m"',  # JSON escapes: no terminal control reaches the screen
    ]
    assert result.stderr == "3 items of stream 'log' of run 'feed-1', next offset 3: the stream is closed\n"
    tail = await asyncio.to_thread(
        durable, "stream", "feed-1", "log", "--store", url, "--offset", "1", "--json"
    )
    assert [json.loads(line) for line in tail.stdout.splitlines()] == [
        {"offset": 1, "value": {"second": [2, "two"]}},
        {"offset": 2, "value": "third\x1b[31m"},
    ]
    assert tail.stderr == ""


async def test_stream_of_a_live_run_says_it_is_open(app: FeedApp, tmp_path: Path) -> None:
    task = await waiting(app)
    result = await asyncio.to_thread(durable, "stream", "feed-1", "log", "--store", app.wf._store_url or "")
    assert result.stdout.splitlines() == ['0  "first line"', '1  {"second": [2, "two"]}']
    assert "next offset 2: the stream is open (--follow tails it)" in result.stderr
    await app.wf.complete("feed-1", "more", None)
    await task


async def follow(url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        DURABLE,
        "stream",
        "feed-1",
        "log",
        "--store",
        url,
        "--follow",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "DURABLE_DEBUG"},
    )


async def line_of(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().rstrip("\n")


async def test_follow_prints_items_as_another_process_writes_them_until_closed(
    app: FeedApp, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    task = await waiting(app)
    proc = await follow(url, "--offset", "1")
    assert await line_of(proc) == '1  {"second": [2, "two"]}'  # while the run still waits
    assert (await app.wf.get_run("feed-1")).status == "waiting"  # type: ignore[union-attr]
    await app.wf.complete("feed-1", "more", None)
    assert await line_of(proc) == '2  "third\\u001b[31m"'
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and out == b""
    assert err.decode() == "2 items of stream 'log' of run 'feed-1', next offset 3: the stream is closed\n"
    await task


async def test_follow_ends_when_the_run_ends_with_the_stream_open(app: FeedApp, tmp_path: Path) -> None:
    await finished(app)
    proc = await asyncio.create_subprocess_exec(
        DURABLE,
        "stream",
        "feed-1",
        "other",
        "--store",
        f"sqlite:///{tmp_path / 'feed.db'}",
        "--follow",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, out, err) == (0, b'{"offset": 0, "value": 1}\n', b"")


async def test_follow_stops_cleanly_on_ctrl_c(app: FeedApp, tmp_path: Path) -> None:
    task = await waiting(app)
    proc = await follow(f"sqlite:///{tmp_path / 'feed.db'}")
    assert await line_of(proc) == '0  "first line"'
    assert await line_of(proc) == '1  {"second": [2, "two"]}'
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert (proc.returncode, out, err) == (130, b"", b"")
    await app.wf.complete("feed-1", "more", None)
    await task


async def test_follow_with_timeout_stops_after_that_long_without_an_item(
    app: FeedApp, tmp_path: Path
) -> None:
    task = await waiting(app)
    proc = await follow(f"sqlite:///{tmp_path / 'feed.db'}", "--timeout", "0.2")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode().splitlines() == ['0  "first line"', '1  {"second": [2, "two"]}']
    assert err.decode().endswith("next offset 2: no new item within --timeout\n")
    await app.wf.complete("feed-1", "more", None)
    await task


async def test_stream_errors_name_the_run_and_the_store(app: FeedApp, tmp_path: Path) -> None:
    await finished(app)
    db = tmp_path / "feed.db"
    unknown = await asyncio.to_thread(durable, "stream", "nope", "log", "--store", f"sqlite:///{db}")
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("error: durable stream 'nope' 'log': no run 'nope' in <SQLiteStore")
    assert str(db) in unknown.stderr
    usage = await asyncio.to_thread(
        durable, "stream", "feed-1", "log", "--store", f"sqlite:///{db}", "--timeout", "1"
    )
    assert usage.exit_code == 2 and "--timeout applies to --follow only" in usage.stderr


async def test_a_store_without_the_capability_is_named(tmp_path: Path) -> None:
    pytest.importorskip("durable_example_store")
    url = f"jsonfile:///{tmp_path / 'store.json'}"
    wf = Workflow("plain", db=url)

    @wf.workflow(id="plain-{n}")
    async def plain(n: int) -> int:
        return n

    async with wf:
        await plain(n=1)
    result = await asyncio.to_thread(durable, "stream", "plain-1", "log", "--store", url)
    assert result.exit_code == 1
    assert "does not declare the 'streams' capability" in result.stderr
    assert "jsonfile" in result.stderr.lower() or "store.json" in result.stderr
    shown = await asyncio.to_thread(durable, "runs", "show", "plain-1", "--store", url, "--json")
    data = json.loads(shown.stdout)
    assert (data["events"], data["streams"]) == (None, None)


async def shown_json(url: str) -> dict[str, Any]:
    result = await asyncio.to_thread(durable, "runs", "show", "feed-1", "--store", url, "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


async def test_runs_show_lists_events_and_streams(app: FeedApp, tmp_path: Path) -> None:
    task = await waiting(app)
    url = f"sqlite:///{tmp_path / 'feed.db'}"
    live = json.loads(
        (await asyncio.to_thread(durable, "runs", "show", "feed-1", "--store", url, "--json")).stdout
    )
    assert live["events"] == {"progress": {"done": 2}}
    assert live["streams"] == [{"key": "log", "items": 2, "closed": False}]
    await app.wf.complete("feed-1", "more", None)
    await task
    done = await asyncio.to_thread(durable, "runs", "show", "feed-1", "--store", url)
    text = [line.rstrip() for line in done.stdout.splitlines()]
    events = text.index("events (1)")
    assert text[events + 1].split() == ["KEY", "VALUE"]
    assert text[events + 2].split() == ["progress", '{"done":2}']
    streams = text.index("streams (2)")
    assert [line.split() for line in text[streams + 1 : streams + 4]] == [
        ["KEY", "ITEMS", "STATE"],
        ["log", "3", "closed"],
        ["other", "1", "open"],
    ]
    data = json.loads(
        (await asyncio.to_thread(durable, "runs", "show", "feed-1", "--store", url, "--json")).stdout
    )
    assert data["streams"] == [
        {"key": "log", "items": 3, "closed": True},
        {"key": "other", "items": 1, "closed": False},
    ]


async def test_the_read_only_store_reads_events_and_streams_and_refuses_their_writes(app: FeedApp) -> None:
    await finished(app)
    inner = await app.wf.get_store()
    store = ReadOnlyStore(inner)
    assert Capability.STREAMS in store.capabilities
    assert await store.get_events("feed-1") == await inner.get_events("feed-1")
    assert await store.read_stream("feed-1", "log", 1, 1) == await inner.read_stream("feed-1", "log", 1, 1)
    assert await store.list_streams("feed-1") == await inner.list_streams("feed-1")
    reader = Workflow("reader", db=store)
    assert [item async for item in reader.read_stream("feed-1", "log")] == [
        (0, "first line"),
        (1, {"second": [2, "two"]}),
        (2, "third\x1b[31m"),
    ]
    assert await reader.get_events("feed-1") == {"progress": {"done": 2}}
    async with store.watch_output("feed-1") as watch:
        await watch.wait(0)
    lease = Lease("feed-1", "owner", 1, 0.0)
    for write in (
        store.set_event(lease, "progress", "1"),
        store.append_stream(lease, "log", "1"),
        store.close_stream(lease, "log"),
    ):
        with pytest.raises(WriteRefused, match=r"run 'feed-1'.*refused"):
            await write
    assert (await inner.read_stream("feed-1", "log", 0)).items[-1] == (2, '"third\\u001b[31m"')


class UnlistingStore(InMemoryStore):
    """A store that cannot list a run's streams (``list_streams`` is optional)."""

    async def list_streams(self, run_id: str) -> dict[str, tuple[int, bool]] | None:
        return None


@pytest.mark.parametrize("lists", [True, False], ids=["store-lists", "journal-only"])
async def test_runs_show_finds_task_body_streams_where_the_store_lists_them(lists: bool) -> None:
    store = InMemoryStore() if lists else UnlistingStore()
    wf = Workflow("outputs", db=store)

    @wf.task
    async def produce() -> int:
        for i in range(4):
            await wf.write_stream("tokens", i)  # from a task body: not journaled
        return 4

    @wf.workflow(id="outputs-{n}")
    async def outputs(n: int) -> int:
        await wf.write_stream("log", "a")
        await wf.close_stream("log")
        return await produce()

    async with wf:
        await outputs(n=1)
        view = (await load_timeline(store, "outputs-1")).to_json()
    journaled = [{"key": "log", "items": 1, "closed": True}]
    tokens = [{"key": "tokens", "items": 4, "closed": False}]
    assert view["streams"] == (journaled + tokens if lists else journaled)


async def test_a_reader_that_stops_reading_ends_the_command_quietly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'big.db'}"
    wf = Workflow("big", db=url)

    @wf.workflow(id="big-{n}")
    async def big(n: int) -> int:
        for i in range(40):  # 400 kB: more than a pipe holds
            await wf.write_stream("log", f"{i:04d}" + "x" * 10_000)
        return n

    async with wf:
        await big(n=1)
    for follow in ([], ["--follow"]):
        proc = await asyncio.create_subprocess_exec(
            DURABLE, "stream", "big-1", "log", "--store", url, *follow,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        assert (await proc.stdout.readline()).startswith(b'0  "0000xxx')
        proc._transport.get_pipe_transport(1).close()  # type: ignore[attr-defined]  # as `| head -1` does
        err = await asyncio.wait_for(proc.stderr.read(), 30)
        assert (await proc.wait(), err) == (0, b"")
