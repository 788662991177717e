"""The in-memory store: same API, nothing on disk. Good for tests and notebooks.

python examples/in_memory.py
"""

from __future__ import annotations

import asyncio

from durable import InMemoryStore, Workflow

wf = Workflow("in-memory-demo", db=InMemoryStore())  # or db="memory://"
executions: list[str] = []


@wf.task
async def double(x: int) -> int:
    executions.append(f"double({x})")
    return x * 2


@wf.workflow(id="doubles-{n}")
async def doubles(n: int) -> list[int]:
    return [await double(i, step_id=f"i-{i}") for i in range(n)]


async def main() -> None:
    print("first call:", await doubles(n=3), "executed:", executions)
    executions.clear()
    print("second call:", await doubles(n=3), "executed:", executions or "nothing (stored result)")


if __name__ == "__main__":
    asyncio.run(main())
