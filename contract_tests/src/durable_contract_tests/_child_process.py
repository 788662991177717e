"""What the suite's helper processes share (``_processes``, ``_queue_claimers``): the command line
that starts one over a pickled store blueprint and order, the lines it prints, and its store.

An order travels in argv (stdin stays free for cues) and every line is flushed at once: the
parent reads an acknowledgement as soon as the store has returned from the write it reports.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Awaitable, Callable

from durable.store import Store

__all__ = ["READY", "command", "say", "serve"]

READY = "ready"
"""The first line a helper process prints, once its store is open."""


def command(module: str, order: object, blueprint: bytes) -> list[str]:
    """The argv that runs ``order`` in ``python -m module`` over the store ``blueprint`` makes."""
    return [sys.executable, "-m", module, pickle.dumps((blueprint, order)).hex()]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve(run: Callable[[Store, object], Awaitable[None]]) -> None:
    """A helper process's ``main``: open the store of the blueprint in argv, ``run`` the order
    with it, close it. ``run`` must be the module's own function, not ``__main__``'s copy: the
    order was pickled as the module's class."""
    blueprint, order = pickle.loads(bytes.fromhex(sys.argv[1]))
    recipe = pickle.loads(blueprint)
    if isinstance(recipe, str):
        from durable._plugins import get_plugin_manager

        store = get_plugin_manager().store_from_url(recipe)
    else:
        store = recipe

    async def main() -> None:
        await store.open()
        try:
            await run(store, order)
        finally:
            await store.close()

    asyncio.run(main())
