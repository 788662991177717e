"""A worker for ``test_stream_crash``, run as a separate process:

    python stream_crash_app.py STORE_URL MARKER

It serves ``feed``, a workflow body appending ``0 .. n-1`` to stream ``log``. Unless ``MARKER``
exists, the process kills itself (SIGKILL) right after the append of offset ``CRASH_AT`` is
stored and before its checkpoint is: the replacement replays that append with the same write id.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from durable import Workflow
from durable.store import Lease
from durable_redis import RedisStore

CRASH_AT = 3
LEASE_SECONDS = 1.0


def build(store: RedisStore) -> tuple[Workflow, Any]:
    wf = Workflow("stream-crash", db=store, lease_seconds=LEASE_SECONDS)

    @wf.workflow(id="feed-{n}")
    async def feed(n: int) -> int:
        for i in range(n):
            await wf.write_stream("log", i)
            await asyncio.sleep(0.02)
        await wf.close_stream("log")
        return n

    return wf, feed


def crashing(store: RedisStore, marker: str) -> RedisStore:
    """``store``, whose append of offset ``CRASH_AT`` kills the process once it is stored."""
    append = store.append_stream

    async def append_then_die(lease: Lease, key: str, value: str, *, write_id: str | None = None) -> Any:
        offset = await append(lease, key, value, write_id=write_id)
        if offset == CRASH_AT and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the item is stored, its checkpoint is not
        return offset

    store.append_stream = append_then_die  # type: ignore[method-assign]
    return store


if __name__ == "__main__":
    url, marker = sys.argv[1], sys.argv[2]
    wf, _ = build(crashing(RedisStore.from_url(url), marker))
    asyncio.run(wf.run_worker(poll_interval=0.05))
