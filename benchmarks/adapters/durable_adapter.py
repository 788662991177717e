"""Adapter for this repository's durable (core + the store plugins installed next to it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Engine, main

from durable import Workflow


class DurableEngine(Engine):
    name = "durable"

    def __init__(self, store_url: str, role: str) -> None:
        super().__init__(store_url, role)
        self.multi_process = not store_url.startswith("memory:")
        self.fail_at_end: set[str] = set()
        self.on_resume: Callable[[int, Any], Awaitable[None]] | None = None
        wf = Workflow("bench", db=store_url, default_retries=0)
        self.wf = wf

        @wf.task
        async def step(i: int) -> int:
            return i

        @wf.workflow
        async def chain(steps: int) -> int:
            run_id = _current_run_id()
            for i in range(steps):
                await step(i)
            if run_id in self.fail_at_end:
                self.fail_at_end.discard(run_id)
                raise RuntimeError("bench: fail at end")
            return steps

        @wf.workflow
        async def waiter(rounds: int) -> int:
            for i in range(rounds):
                payload = await wf.signal(f"s{i}")
                assert self.on_resume is not None
                await self.on_resume(i, payload)
            return rounds

        self._chain = chain
        self._waiter = waiter

    async def open(self) -> None:
        await self.wf.get_store()

    async def close(self) -> None:
        await self.wf.close()

    async def chain(self, run_id: str, steps: int, fail: bool = False) -> None:
        if fail:
            self.fail_at_end.add(run_id)
        await self._chain.run(run_id, steps)

    async def waiter(self, run_id: str, rounds: int, resumed: Callable[[int, Any], Awaitable[None]]) -> None:
        self.on_resume = resumed
        await self._waiter.run(run_id, rounds)

    async def send(self, run_id: str, index: int, payload: dict[str, Any]) -> None:
        await self.wf.complete(run_id, f"s{index}", payload)


def _current_run_id() -> str:
    from durable.context import current_run

    ctx = current_run()
    assert ctx is not None
    return ctx.run_id


if __name__ == "__main__":
    main(DurableEngine)
