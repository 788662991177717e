"""What this machine can do at all: the bare cost of one commit or one round trip, no durable.

    python benchmarks/floors.py [--postgres URL] [--redis URL] [--json]

The targets of issue 4 were set on a machine where a bare SQLite insert + commit in WAL mode
took 19 µs (``synchronous=NORMAL``) and 136 µs (``FULL``). ``run.py`` measures these floors in
the same invocation as durable, so its targets table can say how far durable is above the floor
of the machine it ran on. Each floor is the median of several rounds of sequential operations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

ROUNDS = 5
OPS = 500

REFERENCE_US = {"sqlite_normal_commit": 19.0, "sqlite_full_commit": 136.0, "sqlite_row_in_batch_of_100": 3.0}
"""The floors the issue quotes for the machine its targets were set on."""


STEP_TABLE = """CREATE TABLE steps (run_id TEXT NOT NULL, key TEXT NOT NULL, task TEXT NOT NULL,
    args_digest TEXT NOT NULL, status TEXT NOT NULL, result TEXT, error TEXT, attempts INTEGER NOT NULL,
    started_at REAL NOT NULL, finished_at REAL NOT NULL, PRIMARY KEY (run_id, key))"""
"""A table of the SQLite store's checkpoint shape: a row per step and the primary-key index."""


def _step_row(n: int) -> tuple[object, ...]:
    now = time.time()
    return ("run-1", f"step#{n}", "step", "0" * 32, "completed", str(n), None, 1, now, now)


def _median_us(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1e6, 2)


def sqlite_floors() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("NORMAL", "FULL"):
            db = sqlite3.connect(os.path.join(tmp, f"{mode}.db"), isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {mode}")
            db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
            db.execute(STEP_TABLE)
            samples, step_samples, n = [], [], 0
            for _ in range(ROUNDS):
                started = time.perf_counter()
                for _ in range(OPS):
                    n += 1
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("INSERT INTO t VALUES (?, ?)", (n, "x"))
                    db.execute("COMMIT")
                samples.append((time.perf_counter() - started) / OPS)
                started = time.perf_counter()
                for _ in range(OPS):
                    n += 1
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("INSERT INTO steps VALUES (?,?,?,?,?,?,?,?,?,?)", _step_row(n))
                    db.execute("COMMIT")
                step_samples.append((time.perf_counter() - started) / OPS)
            out[f"sqlite_{mode.lower()}_commit"] = _median_us(samples)
            out[f"sqlite_{mode.lower()}_commit_step_row"] = _median_us(step_samples)
            if mode == "NORMAL":
                samples = []
                for _ in range(ROUNDS):
                    started = time.perf_counter()
                    for _ in range(OPS // 100):
                        db.execute("BEGIN IMMEDIATE")
                        for _ in range(100):
                            n += 1
                            db.execute("INSERT INTO t VALUES (?, ?)", (n, "x"))
                        db.execute("COMMIT")
                    samples.append((time.perf_counter() - started) / (OPS // 100 * 100))
                out["sqlite_row_in_batch_of_100"] = _median_us(samples)
            db.close()
    return out


async def _time_async(op: Callable[[], Awaitable[object]]) -> float:
    for _ in range(50):
        await op()
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(OPS):
            await op()
        samples.append((time.perf_counter() - started) / OPS)
    return _median_us(samples)


async def postgres_floors(url: str) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    # Regular (WAL-logged) tables: their commits wait for the WAL flush, as a checkpoint's does.
    # A temporary table's commit skips that flush and would understate the floor.
    table = f"durable_floor_{os.getpid()}"
    runs, steps = f"{table}_runs", f"{table}_steps"
    keys = iter(range(1 << 62))
    # A checkpoint-shaped row, inserted only while the run's lease token matches, the run row
    # locked until commit: the fencing every durable checkpoint needs, without durable.
    fenced = (
        f"INSERT INTO {steps} SELECT $1, $2, 'step', $3, 'completed', '1', NULL, 1, $4, $4 "
        f"FROM {runs} WHERE run_id = $1 AND lease_token = 1 FOR SHARE"
    )
    try:
        await conn.execute(f"CREATE TABLE {table} (k bigserial PRIMARY KEY, v text)")
        await conn.execute(f"CREATE TABLE {runs} (run_id text PRIMARY KEY, lease_token int8 NOT NULL)")
        await conn.execute(
            f"CREATE TABLE {steps} (run_id text NOT NULL, key text NOT NULL, task text NOT NULL, "
            "args_digest text NOT NULL, status text NOT NULL, result text, error text, "
            "attempts int4 NOT NULL, started_at float8 NOT NULL, finished_at float8 NOT NULL, "
            "PRIMARY KEY (run_id, key))"
        )
        await conn.execute(f"INSERT INTO {runs} VALUES ('run-1', 1)")
        return {
            "postgres_select_1": await _time_async(lambda: conn.fetchval("SELECT 1")),
            "postgres_insert_commit": await _time_async(
                lambda: conn.execute(f"INSERT INTO {table} (v) VALUES ($1)", "x")
            ),
            "postgres_fenced_step_commit": await _time_async(
                lambda: conn.execute(fenced, "run-1", f"step#{next(keys)}", "0" * 32, time.time())
            ),
        }
    finally:
        for name in (table, steps, runs):
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.close()


async def redis_floors(url: str) -> dict[str, float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    where = client.connection_pool.connection_kwargs
    try:
        ping = await _time_async(client.ping)
    finally:
        await client.aclose()
    reader, writer = await asyncio.open_connection(where.get("host", "127.0.0.1"), where.get("port", 6379))

    async def raw_ping() -> bytes:
        writer.write(b"PING\r\n")
        return await reader.readline()

    try:
        raw = await _time_async(raw_ping)
    finally:
        writer.close()
    return {"redis_py_ping": ping, "asyncio_socket_round_trip": raw}


def measure(postgres: str | None, redis: str | None) -> dict[str, float]:
    floors = sqlite_floors()
    for name, url, probe in (("postgres", postgres, postgres_floors), ("redis", redis, redis_floors)):
        if not url:
            continue
        try:
            floors.update(asyncio.run(probe(url)))  # type: ignore[operator]
        except Exception as exc:  # a missing server or driver leaves its floors out
            print(f"[floors] {name}: not measured ({exc!r})", file=sys.stderr)
    return floors


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    floors = measure(args.postgres, args.redis)
    if args.json:
        print(json.dumps(floors))
    else:
        for name, value in floors.items():
            reference = REFERENCE_US.get(name)
            extra = f"   (issue's machine: {reference:g} µs)" if reference else ""
            print(f"{name:<28} {value:>9.1f} µs{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
