"""What bounded reads cost as finished runs pile up, on every store (issue 16, item 13)

    python benchmarks/history.py [--stores memory,sqlite,postgres,redis] [--sizes 0,10000,100000]
                                 [--parked 10000] [--rounds 7] [--ops 20] [--idle 5] [--json FILE]

For every store, three fresh stores of that kind (one per ``--sizes`` entry) hold the same probe
runs, the oldest of all: 20 failed runs of workflow ``probe`` and a completed ``probe-parent`` of
that workflow with 3 child runs (each with 2 steps), and 10 pending runs of workflow ``due``. On
top, newer, each store gets its size of finished runs of workflow ``history``, 2 steps each, 1 in
100 failed, written through the store's API as the engine writes them (``create_run`` of an owned
run, two ``save_step``, ``update_run(..., release=True)``; 1,000 runs at a time with
``asyncio.gather``). Then, in rounds that alternate between the stores (so that load from other
processes falls on all alike), each of ``--ops`` sequential calls:

- *failed*: ``list_runs(RunQuery(statuses={failed}, limit=20))`` (``durable runs list --status
  failed``): a page of 20 in every store;
- *workflow*: ``list_runs(RunQuery(workflow="probe", limit=20))``: the probe runs, under the history;
- *children*: ``list_runs(RunQuery(id_prefix="probe-parent/"))``, the child lookup;
- *timeline*: ``load_timeline(store, "probe-parent")`` (``durable runs show``, the viewer's
  ``/api/run``): the run, its steps, signals and children;
- *poll*: ``due_runs(now, limit=16)``: the 10 due runs;
- *prune --dry-run*: ``_inspect.prune(store, cutoff, dry_run=True)`` counting every finished run
  (what ``durable runs prune --dry-run`` does): it reads them all, so it may grow linearly; the
  table gives its total and its time per run counted;

then ``--parked`` runs of workflow ``parked`` are parked on a signal (as the engine parks one:
``create_run`` owned, ``update_run(WAITING, release=True)`` with no wake time) in every store, and:

- *poll, N parked*: ``due_runs`` again: still the 10 due runs;
- *idle worker*: a ``Worker`` of workflow ``parked`` (``poll_interval`` 0.5 s, the default) on the
  store for ``--idle`` seconds, with nothing due for it: the share of one core this process used.

Each figure is the median of ``--rounds`` rounds' mean (prune: of 3 rounds of one call); *ratio*
is a store's figure over the empty store's (prune: its time per run counted, over the second
store's). A store whose call took longer than ``--give-up`` seconds is not asked again (where the
call can be cut off, it is, and shows as "gave up"). Every store is fresh and removed afterwards
(see ``_stores.fresh_store``, label ``history``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from _stores import STORES, fresh_store, machine, mean_us

from durable import Workflow
from durable._inspect import load_timeline, prune
from durable._lifecycle import waiting_for_signal
from durable._records import ErrorInfo
from durable.store import Lease, RunQuery, RunRecord, RunStatus, StepRecord, StepStatus, Store

BATCH = 1000
FAILED_PROBES = 20
CHILDREN = 3
DUE = 10
INPUTS = '{"n": 1}'
DIGEST = "0" * 32
ERROR = ErrorInfo("ValueError", "it went wrong", "Traceback ...").to_json()
PRUNE_ROUNDS = 3


def owned(run_id: str, workflow: str, created_at: float, parent: str | None = None) -> RunRecord:
    now = time.time()
    return RunRecord(
        run_id, workflow, RunStatus.RUNNING, INPUTS, DIGEST, created_at, created_at, owner="filler",
        lease_token=1, lease_expires_at=now + 600, parent_run_id=parent,
    )  # fmt: skip


async def finish(store: Store, runs: list[tuple[RunRecord, RunStatus]]) -> None:
    """Write ``runs`` as the engine writes runs that finish after two steps (concurrently)."""
    await asyncio.gather(*(store.create_run(run) for run, _ in runs))
    leases = [Lease(run.run_id, "filler", 1, time.time() + 600) for run, _ in runs]
    for key in ("step#0", "step#1"):
        now = time.time()
        steps = [
            StepRecord(lease.run_id, key, "step", DIGEST, StepStatus.COMPLETED, '"ok"', None, 1, now, now)
            for lease in leases
        ]
        await asyncio.gather(
            *(store.save_step(lease, step) for lease, step in zip(leases, steps, strict=True))
        )
    await asyncio.gather(
        *(
            store.update_run(lease, status, result='"done"' if status is RunStatus.COMPLETED else None,
                             error=ERROR if status is RunStatus.FAILED else None, release=True)
            for lease, (_, status) in zip(leases, runs, strict=True)
        )
    )  # fmt: skip


async def add_probes(store: Store, created_at: float) -> None:
    runs = [
        (owned(f"probe-failed-{i:02d}", "probe", created_at + i), RunStatus.FAILED)
        for i in range(FAILED_PROBES)
    ]
    runs.append((owned("probe-parent", "probe", created_at + 100), RunStatus.COMPLETED))
    for c in range(CHILDREN):
        child = owned(f"probe-parent/durable:child@kid#{c}", "kid", created_at + 101 + c, "probe-parent")
        runs.append((child, RunStatus.COMPLETED))
    await finish(store, runs)
    for i in range(DUE):
        t = created_at + 200 + i
        await store.create_run(RunRecord(f"due-{i:02d}", "due", RunStatus.PENDING, INPUTS, DIGEST, t, t))


async def add_history(store: Store, count: int, created_at: float) -> None:
    for first in range(0, count, BATCH):
        numbers = range(first, min(first + BATCH, count))
        await finish(
            store,
            [
                (owned(f"h-{n:07d}", "history", created_at + n * 1e-3),
                 RunStatus.FAILED if n % 100 == 99 else RunStatus.COMPLETED)
                for n in numbers
            ],
        )  # fmt: skip


async def park(store: Store, count: int, created_at: float) -> None:
    activity = waiting_for_signal("go", None)
    for first in range(0, count, BATCH):
        runs = [
            owned(f"parked-{n:06d}", "parked", created_at + n * 1e-3)
            for n in range(first, min(first + BATCH, count))
        ]
        await asyncio.gather(*(store.create_run(run) for run in runs))
        leases = [Lease(run.run_id, "filler", 1, time.time() + 600) for run in runs]
        await asyncio.gather(
            *(store.update_run(lease, RunStatus.WAITING, release=True, activity=activity) for lease in leases)
        )


def operations(store: Store) -> dict[str, Callable[[int], Awaitable[Any]]]:
    failed = RunQuery(statuses=frozenset({RunStatus.FAILED}), limit=20)
    probe = RunQuery(workflow="probe", limit=20)
    children = RunQuery(id_prefix="probe-parent/")

    async def list_failed(_: int) -> None:
        if len(await store.list_runs(failed)) != 20:
            raise RuntimeError(f"{store!r}: not 20 failed runs")

    async def list_workflow(_: int) -> None:
        if len(await store.list_runs(probe)) != 20:
            raise RuntimeError(f"{store!r}: not 20 runs of workflow probe")

    async def child_lookup(_: int) -> None:
        if len(await store.list_runs(children)) != CHILDREN:
            raise RuntimeError(f"{store!r}: not {CHILDREN} children")

    async def timeline(_: int) -> None:
        if len((await load_timeline(store, "probe-parent")).children) != CHILDREN:
            raise RuntimeError(f"{store!r}: the timeline lacks children")

    async def poll(_: int) -> None:
        if len(await store.due_runs(time.time(), limit=16)) != DUE:
            raise RuntimeError(f"{store!r}: not {DUE} due runs")

    return {
        "failed": list_failed,
        "workflow": list_workflow,
        "children": child_lookup,
        "timeline": timeline,
        "poll": poll,
    }


async def prune_us(store: Store, _: int) -> float:
    started = time.perf_counter_ns()
    await prune(store, time.time() + 3600, dry_run=True)
    return (time.perf_counter_ns() - started) / 1000


async def compare(
    op: str, stores: list[Store], rounds: int, ops: int, give_up: float
) -> list[list[float] | None]:
    """``op`` timed on every store in alternate rounds. A store whose call took longer than
    ``give_up`` seconds is not asked again: its rounds so far stand (``None`` if a call was cut
    off; a store that never yields to the event loop, as SQLite's reads on the loop, cannot be)."""
    timed: list[list[float] | None] = [[] for _ in stores]
    calls: list[Callable[[int], Awaitable[float]]] = []
    for store in stores:
        if op == "prune":
            calls.append(functools.partial(prune_us, store))
        else:
            call = operations(store)[op]
            await call(-1)  # untimed: prepared statements, scripts loaded, caches warm
            calls.append(functools.partial(mean_us, ops, call))
    if op == "prune":
        rounds, ops = PRUNE_ROUNDS, 1
    done = [False for _ in stores]
    for round_ in range(rounds):
        for side, call in enumerate(calls):
            so_far = timed[side]
            if so_far is None or done[side]:
                continue
            try:
                so_far.append(await asyncio.wait_for(call(round_ * ops), give_up * ops))
            except TimeoutError:
                timed[side] = None
                continue
            done[side] = so_far[-1] > give_up * 1e6
    return timed


async def idle_cpu(store: Store, seconds: float) -> float:
    """The share of one core this process uses while a worker of workflow ``parked`` idles."""
    wf = Workflow("history", db=store)  # not closed: the store is closed by fresh_store

    @wf.workflow(name="parked")
    async def parked() -> None:
        await wf.signal("go")

    # Its first poll reports the due runs of workflow `due`, which it does not define: not news here.
    logging.getLogger("durable.worker").setLevel(logging.ERROR)
    worker = wf.worker(poll_interval=0.5)
    stop = asyncio.Event()
    running = asyncio.ensure_future(worker.run(stop))
    await asyncio.sleep(1.0)  # the first poll and the foreign-run check
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    share = (time.process_time() - cpu) / (time.monotonic() - wall)
    stop.set()
    await running
    if worker.resumed:
        raise RuntimeError(f"{store!r}: the idle worker executed {worker.resumed} run(s)")
    return share * 100


def summary(
    op: str, sizes: list[int], timed: Sequence[list[float] | None], per_run: list[int] | None
) -> dict[str, Any]:
    medians = [None if t is None else statistics.median(t) for t in timed]
    result: dict[str, Any] = {"op": op, "sizes": sizes, "us": medians, "rounds_us": timed}
    if per_run is not None:
        result["us_per_run"] = [None if m is None else m / n for m, n in zip(medians, per_run, strict=True)]
    figures = result.get("us_per_run") or medians
    # Prune reads every run, so its time per run is compared with the first store holding history
    # (the empty store's is mostly fixed costs); every other figure with the empty store's.
    base = figures[1] if per_run is not None and len(figures) > 1 else figures[0]
    result["ratios"] = [None if m is None or not base else m / base for m in figures]
    return result


async def bench_store(
    name: str, sizes: list[int], parked: int, rounds: int, ops: int, idle: float, give_up: float
) -> list[dict[str, Any]]:
    async with contextlib.AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(fresh_store(name, "history")) for _ in sizes]
        start = time.time() - max(sizes) * 1e-3 - 7200
        fill = []
        for store, size in zip(stores, sizes, strict=True):
            began = time.perf_counter()
            await add_probes(store, start)
            await add_history(store, size, start + 3600)
            fill.append(round(time.perf_counter() - began, 1))
            print(f"{name}: {size:,} finished runs written in {fill[-1]} s", file=sys.stderr, flush=True)
        results = []
        for op in ("failed", "workflow", "children", "timeline", "poll"):
            results.append(summary(op, sizes, await compare(op, stores, rounds, ops, give_up), None))
        finished = [size + FAILED_PROBES + 1 + CHILDREN for size in sizes]
        results.append(
            summary("prune --dry-run", sizes, await compare("prune", stores, rounds, ops, give_up), finished)
        )
        parking = []
        for store in stores:
            began = time.perf_counter()
            await park(store, parked, time.time())
            parking.append(round(time.perf_counter() - began, 1))
        print(f"{name}: {parked:,} runs parked in each store ({parking} s)", file=sys.stderr, flush=True)
        timed = await compare("poll", stores, rounds, ops, give_up)
        results.append(summary(f"poll, {parked:,} parked", sizes, timed, None))
        shares = [[await idle_cpu(store, idle)] for store in stores]
        results.append(summary(f"idle worker, {parked:,} parked, %", sizes, shares, None))
        for result in results:
            result.update(store=name, fill_seconds=fill, park_seconds=parking)
        return results


def shown(value: float | None, unit: str) -> str:
    if value is None:
        return "gave up"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value / 1000:,.2f} ms" if value >= 1000 else f"{value:,.1f} µs"


def print_table(results: list[dict[str, Any]], sizes: list[int], give_up: float) -> None:
    heads = [f"{size:,}" for size in sizes]
    print(
        f"{'store':<9}{'operation':<32}"
        + "".join(f"{h:>13}" for h in heads)
        + "".join(f"{'ratio ' + h:>15}" for h in heads[1:])
    )
    for r in results:
        unit = "%" if "%" in r["op"] else "us"
        cells = "".join(f"{shown(v, unit):>13}" for v in r["us"])
        ratios = "".join(f"{'-' if x is None else f'{x:.2f}':>15}" for x in r["ratios"][1:])
        print(f"{r['store']:<9}{r['op']:<32}{cells}{ratios}")
        if "us_per_run" in r:
            per = "".join(f"{shown(v, 'us'):>13}" for v in r["us_per_run"])
            print(f"{'':<9}{'  per run counted':<32}{per}")
    second = f"{sizes[1]:,}" if len(sizes) > 1 else "first"
    print(
        f"ratio: over the empty store's figure; prune's: its time per run counted, over the {second} store's"
    )
    print(f"gave up: a call cut off after {give_up:g} s; a store is not asked again after a call that long")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--sizes", default="0,10000,100000")
    parser.add_argument("--parked", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=20)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds the idle worker is measured")
    parser.add_argument("--give-up", type=float, default=60.0, help="seconds one call may take")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = []
    for name in args.stores.split(","):
        try:
            results.extend(
                await bench_store(
                    name.strip(), sizes, args.parked, args.rounds, args.ops, args.idle, args.give_up
                )
            )
        except (ImportError, OSError) as exc:
            print(f"{name}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    print_table(results, sizes, args.give_up)
    if args.json:
        report = {"machine": machine(), "command": sys.argv, "when": time.time(), "results": results}
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
