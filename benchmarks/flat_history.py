"""Does a store's cost stay flat as finished runs pile up? (issue 14, defect 6)

    python benchmarks/flat_history.py [--stores memory,sqlite,postgres,redis] [--finished 100000]
                                      [--rounds 15] [--ops 100] [--json FILE]

For every store, this times three operations on two fresh stores of that kind, both holding 10
due (pending) runs and 10 runs asleep until tomorrow (live but not due: so that both stores list
20 runs, the same 20), one with no other run and one with ``--finished`` completed runs, and
prints the ratio of the two (the goal is below 1.5):

- *poll*: ``due_runs(now)``, what a worker does twice a second;
- *list*: ``list_runs(RunQuery(limit=20))``, what ``durable runs list --limit 20`` does;
- *start*: ``create_run`` of a new pending run, what ``start()`` does.

A round is ``--ops`` sequential calls; the two stores take turns round by round (so load from
other processes falls on both alike), and each number is the median of ``--rounds`` rounds' mean.
*start* is timed last (its runs are pending: a later poll would find them due). On Postgres, poll
and list are timed again after a ``VACUUM (ANALYZE)`` of both stores' tables (see below).

The finished runs are written through the store's own API, as the engine writes a run that
finished: ``create_run`` of a run owned by a fake executor, then ``update_run(lease, COMPLETED,
result=..., release=True)``, 1,000 runs at a time with ``asyncio.gather`` (so each store batches
them as it batches any concurrent writes). No store gets a bulk path of its own: the rows, index
entries and keys are exactly the ones real finished runs leave. They are created before the due
runs (history is older than what is due).

Every store is fresh and removed afterwards: a temporary SQLite file, a Postgres schema of its
own (``durable_flat_<pid>_<hex>``, dropped), a Redis key prefix of its own (keys deleted).
Servers: ``DURABLE_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``),
``DURABLE_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _stores import STORES, fresh_store, machine, mean_us

from durable.store import Lease, RunQuery, RunRecord, RunStatus, Store

DUE_RUNS = 10
FILL_BATCH = 1000
OPERATIONS = ("poll", "list", "start")
GOAL = 1.5


def pending(run_id: str, created_at: float) -> RunRecord:
    return RunRecord(run_id, "flat", RunStatus.PENDING, '{"n": 1}', "0" * 32, created_at, created_at)


def sleeping(run_id: str, created_at: float, wake_at: float) -> RunRecord:
    """A run parked in a durable sleep: live, not due, and not finished."""
    return RunRecord(
        run_id, "flat", RunStatus.WAITING, '{"n": 1}', "0" * 32, created_at, created_at, wake_at=wake_at
    )


async def add_finished(store: Store, count: int, start: int, created_at: float) -> None:
    """``count`` completed runs, written as the engine writes a run that finishes."""
    for first in range(start, start + count, FILL_BATCH):
        numbers = range(first, min(first + FILL_BATCH, start + count))
        now = time.time()
        owned = [
            RunRecord(
                f"done-{n:07d}", "flat", RunStatus.RUNNING, '{"n": 1}', "0" * 32, created_at + n * 1e-3,
                created_at + n * 1e-3, owner="filler", lease_token=1, lease_expires_at=now + 600,
            )
            for n in numbers
        ]  # fmt: skip
        await asyncio.gather(*(store.create_run(run) for run in owned))
        leases = [Lease(run.run_id, "filler", 1, now + 600) for run in owned]
        await asyncio.gather(
            *(store.update_run(lease, RunStatus.COMPLETED, result='"done"', release=True) for lease in leases)
        )


def operations(store: Store, label: str) -> dict[str, Callable[[int], Awaitable[Any]]]:
    async def poll(_: int) -> None:
        due = await store.due_runs(time.time())
        if len(due) != DUE_RUNS:
            raise RuntimeError(f"{store!r}: {len(due)} due runs, expected {DUE_RUNS}")

    query = RunQuery(limit=20)

    async def listing(_: int) -> None:
        await store.list_runs(query)

    async def start(i: int) -> None:
        await store.create_run(pending(f"started-{label}-{i:06d}", time.time()))

    return {"poll": poll, "list": listing, "start": start}


async def compare(
    op: str, empty: Store, full: Store, rounds: int, ops: int
) -> tuple[list[float], list[float]]:
    """``op`` timed on both stores in alternate rounds (empty, full, empty, ...), so that a change
    in the machine's load during the run (other processes) falls on both alike."""
    return await compare_calls(operations(empty, "empty")[op], operations(full, "full")[op], rounds, ops)


async def compare_calls(
    empty: Callable[[int], Awaitable[Any]], full: Callable[[int], Awaitable[Any]], rounds: int, ops: int
) -> tuple[list[float], list[float]]:
    """Rounds of ``ops`` calls of each, alternating (``compare``); calls get distinct numbers."""
    calls = empty, full
    for call in calls:  # untimed: prepared statements, scripts loaded, caches warm
        await call(-1)
    timed: tuple[list[float], list[float]] = ([], [])
    for round_ in range(rounds):
        for side, call in enumerate(calls):
            timed[side].append(await mean_us(ops, call, round_ * ops))
    return timed


def summary(op: str, empty: list[float], full: list[float]) -> dict[str, Any]:
    e, f = statistics.median(empty), statistics.median(full)
    return {
        "op": op,
        "empty_us": round(e, 2),
        "full_us": round(f, 2),
        "ratio": round(f / e, 3),
        "ratio_of_minimums": round(min(full) / min(empty), 3),
        "empty_rounds_us": [round(x, 2) for x in empty],
        "full_rounds_us": [round(x, 2) for x in full],
    }


async def vacuum(store: Store) -> None:
    from durable_postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    sql = f"VACUUM (ANALYZE) {store._quoted}.runs"
    await store._call("vacuum", lambda conn: conn.execute(sql))


async def bench_store(name: str, finished: int, rounds: int, ops: int) -> list[dict[str, Any]]:
    async with fresh_store(name) as empty, fresh_store(name) as full:
        now = time.time()
        history_from = now - finished * 1e-3 - 3600  # finished runs are older than the due ones
        for store in (empty, full):
            for i in range(DUE_RUNS):
                await store.create_run(pending(f"due-{i:02d}", now + i * 1e-3))
                await store.create_run(sleeping(f"asleep-{i:02d}", now + i * 1e-3, wake_at=now + 86_400))
        filling = time.perf_counter()
        await add_finished(full, finished, 0, history_from)
        fill_s = round(time.perf_counter() - filling, 1)
        listed = await full.list_runs(RunQuery(statuses=frozenset({RunStatus.COMPLETED}), limit=1))
        if finished and not listed:
            raise RuntimeError(f"{full!r}: the finished runs are missing")
        results = []
        # start last: the runs it starts are pending, so a poll after it would find more than 10.
        for op in ("poll", "list"):
            results.append(summary(op, *await compare(op, empty, full, rounds, ops)))
        if name == "postgres":
            # Runs that finished leave dead row versions and index entries until (auto)vacuum
            # removes them: measured again after a VACUUM, as autovacuum would leave the table.
            for store in (empty, full):
                await vacuum(store)
            for op in ("poll", "list"):
                results.append(summary(f"{op} after VACUUM", *await compare(op, empty, full, rounds, ops)))
        results.append(summary("start", *await compare("start", empty, full, rounds, ops)))
    for result in results:
        result.update(store=name, finished=finished, fill_seconds=fill_s)
    return results


def print_table(
    results: list[dict[str, Any]], finished: int, *, op_width: int = 20, fill: bool = False
) -> None:
    """The results as a table; ``fill``: with the seconds the history took to write."""
    columns = f"{'µs, 0 finished':>16}{f'µs, {finished:,}':>16}{'ratio':>8}{'(minimums)':>12}"
    print(f"{'store':<10}{'operation':<{op_width}}{columns}" + (f"{'fill s':>8}" if fill else ""))
    for r in results:
        mark = "" if r["ratio"] < GOAL else "  above the goal"
        print(
            f"{r['store']:<10}{r['op']:<{op_width}}{r['empty_us']:>16,.1f}{r['full_us']:>16,.1f}"
            f"{r['ratio']:>8.2f}{r['ratio_of_minimums']:>12.2f}"
            + (f"{r['fill_seconds']:>8}" if fill else "")
            + mark
        )
    print(f"ratio: median of the full store's rounds over the empty store's (goal below {GOAL})")


Bench = Callable[[str, int, int, int], Awaitable[list[dict[str, Any]]]]
"""``bench_store(name, finished, rounds, ops)``: one store's results."""


async def run_command(
    doc: str, bench: Bench, *, ops: int, doing: str, op_width: int = 20, fill: bool = False
) -> None:
    """The command line of a flat-history benchmark: ``bench`` each of ``--stores``, print the
    table, write ``--json``. ``doing`` (with ``{finished}``) is announced per store."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--finished", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=ops)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    results = []
    for name in args.stores.split(","):
        print(f"{name}: {doing.format(finished=args.finished)}", file=sys.stderr, flush=True)
        try:
            results.extend(await bench(name.strip(), args.finished, args.rounds, args.ops))
        except (ImportError, OSError) as exc:
            print(f"{name}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    print_table(results, args.finished, op_width=op_width, fill=fill)
    if args.json:
        report = json.dumps({"machine": machine(), "command": sys.argv, "results": results}, indent=2)
        await asyncio.to_thread(Path(args.json).write_text, report + "\n", encoding="utf-8")


async def main() -> None:
    await run_command(
        __doc__, bench_store, ops=100, doing="measuring, then adding {finished:,} finished runs ..."
    )


if __name__ == "__main__":
    asyncio.run(main())
