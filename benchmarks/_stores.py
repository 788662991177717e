"""What the history benchmarks share (``flat_history.py``, ``history.py``): fresh stores of every
kind, removed afterwards, timing of sequential calls, and a description of the machine.

Servers: ``DURABLE_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
``DURABLE_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from durable.store import Store

POSTGRES_URL = os.environ.get("DURABLE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DURABLE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
STORES = ("memory", "sqlite", "postgres", "redis")


@contextlib.asynccontextmanager
async def fresh_store(name: str, label: str = "flat") -> AsyncIterator[Store]:
    """An opened, empty store of kind ``name``, removed with everything in it afterwards: a
    temporary SQLite file, a Postgres schema ``durable_<label>_<pid>_<hex>`` (dropped), a Redis key
    prefix ``durable-<label>-<pid>_<hex>`` (keys deleted)."""
    tag = f"{os.getpid():x}_{secrets.token_hex(3)}"
    if name == "memory":
        from durable_memory import InMemoryStore

        async with InMemoryStore() as memory:
            yield memory
    elif name == "sqlite":
        from durable_sqlite import SQLiteStore

        directory = tempfile.mkdtemp(prefix=f"durable-{label}-")
        try:
            async with SQLiteStore(os.path.join(directory, f"{label}.db")) as sqlite:
                yield sqlite
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    elif name == "postgres":
        from durable_postgres import PostgresStore

        postgres = PostgresStore(POSTGRES_URL, schema=f"durable_{label}_{tag}")
        await postgres.open()
        try:
            yield postgres
        finally:
            await postgres.drop_schema()
            await postgres.close()
    elif name == "redis":
        from durable_redis import RedisStore

        redis = RedisStore(REDIS_URL, ttl=0, prefix=f"durable-{label}-{tag}")
        await redis.open()
        try:
            yield redis
        finally:
            await redis.drop_all()
            # Whatever drop_all's pattern leaves (the <prefix>:alive marker, today): the prefix is
            # this run's own, so every key under it goes.
            async for key in redis.client.scan_iter(match=f"{redis.keys.prefix}:*", count=1000):
                await redis.client.unlink(key)
            await redis.close()
    else:
        raise SystemExit(f"unknown store {name!r}; choose from {', '.join(STORES)}")


async def mean_us(ops: int, call: Callable[[int], Awaitable[Any]], first: int) -> float:
    """The mean µs of ``ops`` sequential calls ``call(first)``, ``call(first + 1)``, ..."""
    gc.collect()
    started = time.perf_counter_ns()
    for i in range(first, first + ops):
        await call(i)
    return (time.perf_counter_ns() - started) / ops / 1000


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
