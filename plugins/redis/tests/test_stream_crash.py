"""A worker killed (SIGKILL) between a stream append and its checkpoint, on Redis (issue 18): the
replacement's replay appends nothing again (the write id), and a live reader in another process
receives every item exactly once, in order, across the crash."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis_test_kit import StoreMaker
from stream_crash_app import CRASH_AT, build

pytestmark = pytest.mark.slow

APP = str(Path(__file__).with_name("stream_crash_app.py"))
ITEMS = 8


def worker(url: str, marker: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, APP, url, str(marker)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


async def test_a_worker_killed_after_an_append_before_its_checkpoint_appends_it_once(
    make_store: StoreMaker, redis_url: str, tmp_path: Path
) -> None:
    store = make_store(ttl=0)
    url = f"{redis_url}?prefix={store.prefix}&ttl=0"
    marker = tmp_path / "crashed"
    wf, feed = build(store)
    first = worker(url, marker)
    second: subprocess.Popen[bytes] | None = None
    received: list[tuple[int, Any]] = []
    try:
        run_id = await feed.start(n=ITEMS)

        async def read() -> None:
            async for item in wf.read_stream(run_id, "log"):
                received.append(item)

        reader = asyncio.ensure_future(read())
        for _ in range(300):  # the first worker kills itself at offset CRASH_AT
            if first.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert first.returncode == -signal.SIGKILL, first.stderr.read() if first.stderr else b""
        assert marker.exists()
        second = worker(url, marker)
        await asyncio.wait_for(reader, 30)  # the replacement resumes after the lease, and closes
        assert await wf.wait_for(run_id, timeout=10) == ITEMS
        stored = await store.read_stream(run_id, "log", 0)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        await wf.close()
    assert received == [(i, i) for i in range(ITEMS)], "each item once, in order, across the crash"
    assert [(at, int(value)) for at, value in stored.items] == received and stored.closed
    assert 0 < CRASH_AT < ITEMS - 1  # the crash fell inside the stream
