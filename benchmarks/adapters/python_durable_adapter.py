"""Adapter for the original library, python-durable 0.2.3 from PyPI (runs in its own Python 3.12 venv).

Replay: the workflow raises after its last step the first time (its run is marked failed); calling
the same run id again replays every recorded step and finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from _harness import Engine, NotSupported, main

from durable import InMemoryStore, SQLiteStore, Workflow
from durable.context import _active_run


def _store(url: str) -> Any:
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return InMemoryStore()
    if parts.scheme == "sqlite":
        return SQLiteStore(parts.path[1:] if parts.path.startswith("//") else parts.path.lstrip("/"))
    if parts.scheme == "redis":
        from durable import RedisStore

        query = dict(parse_qsl(parts.query))
        base = url.split("?", 1)[0]
        return RedisStore(url=base, prefix=query.get("prefix", "durable"))
    raise NotSupported(f"python-durable 0.2.3 has no {parts.scheme} store")


class OriginalEngine(Engine):
    name = "python-durable 0.2.3"

    def __init__(self, store_url: str, role: str) -> None:
        super().__init__(store_url, role)
        logging.getLogger("durable").setLevel(logging.CRITICAL)
        self.multi_process = not store_url.startswith("memory:")
        self.fail_at_end: set[str] = set()
        self.on_resume: Callable[[int, Any], Awaitable[None]] | None = None
        self.wf = wf = Workflow("bench", db=_store(store_url), default_retries=0)

        @wf.task
        async def step(i: int) -> int:
            return i

        @wf.workflow(id="chain-{run}")
        async def chain(run: str, steps: int) -> int:
            for i in range(steps):
                await step(i)
            run_id = _active_run.get().run_id
            if run_id in self.fail_at_end:
                self.fail_at_end.discard(run_id)
                raise RuntimeError("bench: fail at end")
            return steps

        @wf.workflow(id="waiter-{run}")
        async def waiter(run: str, rounds: int) -> int:
            for i in range(rounds):
                payload = await wf.signal(f"s{i}")  # its signals are single-use per name
                assert self.on_resume is not None
                await self.on_resume(i, payload)
            return rounds

        self._chain, self._waiter = chain, waiter

    async def open(self) -> None:
        await self.wf._ensure_initialized()

    async def close(self) -> None:
        client = getattr(self.wf._store, "_client", None) or getattr(self.wf._store, "_redis", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()

    async def chain(self, run_id: str, steps: int, fail: bool = False) -> None:
        if fail:
            self.fail_at_end.add(run_id)
        await self._chain.run(run_id, run_id, steps)

    async def waiter(self, run_id: str, rounds: int, resumed: Callable[[int, Any], Awaitable[None]]) -> None:
        self.on_resume = resumed
        await self._waiter.run(run_id, run_id, rounds)

    async def send(self, run_id: str, index: int, payload: dict[str, Any]) -> None:
        await self.wf.complete(run_id, f"s{index}", payload)


if __name__ == "__main__":
    main(OriginalEngine)
