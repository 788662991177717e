"""Queues (issue 17): how fast a queued run starts, how throughput scales with worker processes,
what a limit costs at the claim; DBOS 3.4's queues in the same shapes (``adapters/dbos_queues.py``).

    python benchmarks/queues.py [--stores memory,sqlite,postgres,redis] [--engines durable,dbos]
                                [--quick] [--json FILE]

For every store declaring ``Capability.QUEUES`` (and DBOS on its SQLite and Postgres system
databases), on a fresh store each time (``run.fresh_store``: a temporary SQLite file, a Postgres
database ``durbench<hex>`` of its own, dropped after, a Redis key prefix, deleted after):

- *notify*: the store's own notification latency, measured on its driver without durable: Postgres
  ``NOTIFY`` to a ``LISTEN``ing connection, Redis ``PUBLISH`` to a subscriber, SQLite a commit
  seen by another connection polling ``PRAGMA data_version`` every 10 ms (the store's change
  watcher), memory an ``asyncio.Event``. The floor of the next line.
- *enqueue to first step*: one idle worker process (``run_worker``, poll 0.5 s: pushed wake-ups
  only show below that) serves queue ``bench``; this process calls ``start()`` and the run's first
  step records ``time.monotonic()`` (one clock for every process of the host); 0.2 s between runs,
  so the worker is idle in its wait each time. p50 and p99.
- *throughput*: ``--runs`` runs of 3 trivial steps enqueued, then 1, 2 or 4 worker processes
  (``--concurrency 16`` each, the default) told to start at once; runs per second from the first
  step of any run to the last step of any (timestamps the steps return), so process start-up is
  left out. The same with a concurrency limit of 1,000,000 (never reached, counted at every claim).
  With each pass, the workers' CPU per run (``/proc/<pid>/stat``) and how busy the machine's CPUs
  were (``/proc/stat``, whoever used them: the store's server, the workers, anything else).
- *claim*: ``claim_queued(limit=1)`` alone, µs, in this process on the store object, with no
  limit, a concurrency limit, a partition limit (10 partitions) and a rate limit (none of them
  reached: each claim counts them), alternating between the four queues round by round; beside the
  store's bare round trip (``SELECT 1``, ``PING``).

Nothing is asserted; the tables are printed and, with ``--json``, written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _stores import machine
from adapters._processes import WorkerProcesses, percentile
from flat_history import pending
from run import ADAPTERS, durable_stores, fresh_store, make_venv

from durable import Workflow
from durable.store import Capability, QueuedRun, QueueLimits, RunStatus, Store

HERE = Path(__file__).resolve().parent
QUEUE = "bench"
NEVER = 1_000_000
"""A limit no run reaches: the claim still counts against it."""
GAP = 0.2


# -- the application (this process and its worker processes) ----------------------------------


def build_app(url: str, limited: bool = False) -> Workflow:
    wf = Workflow("qbench", db=url, default_retries=0)
    wf.queue(QUEUE, concurrency=NEVER if limited else None)

    @wf.task
    async def first(i: int) -> float:
        return time.monotonic()

    @wf.task
    async def middle(i: int) -> int:
        return i

    @wf.task
    async def last(i: int) -> float:
        return time.time()

    @wf.workflow(id="lat-{i}", queue=QUEUE)
    async def latency(i: int) -> float:
        return await first(i)

    @wf.workflow(id="run-{i}", queue=QUEUE)
    async def chain(i: int) -> list[float]:
        began = time.time()
        await first(i)
        await middle(i)
        return [began, await last(i)]

    return wf


def worker_main(url: str, limited: bool) -> None:
    """A worker process: ``ready`` on stdout, then serve the queue from the ``go`` line on."""

    async def go() -> None:
        wf = build_app(url, limited)
        await wf.get_store()
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await wf.run_worker(queues=[QUEUE])

    asyncio.run(go())


class Workers(WorkerProcesses):
    """Worker processes of this benchmark's app (``--worker``), stopped with SIGTERM."""

    def __init__(self, url: str, count: int, limited: bool = False) -> None:
        super().__init__(
            [sys.executable, __file__, "--worker", url, *(["--limited"] if limited else [])], count
        )

    def stop(self) -> None:
        self.terminate()


# -- enqueue to first step ---------------------------------------------------------------------


async def latency(url: str, samples: int, in_process: bool) -> dict[str, float]:
    wf = build_app(url)
    job = wf.executor.workflows["latency"]
    stop = asyncio.Event()
    workers = None
    if in_process:  # memory: the store lives in this process
        task = asyncio.ensure_future(wf.run_worker(queues=[QUEUE], stop=stop))
    else:
        await wf.get_store()
        workers = Workers(url, 1)
        workers.go()
    try:
        await asyncio.sleep(1.0)  # the worker is up and idle in its wait
        times, enqueues = [], []
        for i in range(samples):
            sent = time.monotonic()
            run_id = await job.start(i=i)
            enqueues.append((time.monotonic() - sent) * 1e3)
            started = await wf.wait_for(run_id, timeout=30)
            times.append((started - sent) * 1e3)
            await asyncio.sleep(GAP)
    finally:
        if workers is not None:
            workers.stop()
        else:
            stop.set()
            await task
        await wf.close()
    return {
        "p50_ms": percentile(times, 0.5),
        "p99_ms": percentile(times, 0.99),
        "start_call_p50_ms": percentile(enqueues, 0.5),
        "samples": samples,
    }


# -- throughput ------------------------------------------------------------------------------------


async def throughput(url: str, processes: int, runs: int, limited: bool) -> dict[str, float]:
    wf = build_app(url, limited)
    chain = wf.executor.workflows["chain"]
    store = await wf.get_store()
    for first in range(0, runs, 100):
        await asyncio.gather(*(chain.start(i=i) for i in range(first, min(first + 100, runs))))
    workers = Workers(url, processes, limited)
    try:
        went, busy_before = time.time(), machine_busy()
        cpu_before = [process_cpu(proc.pid) for proc in workers.procs]
        workers.go()
        while True:
            stats = await store.queue_stats(QUEUE, time.time())
            if stats.queued == 0 and stats.delayed == 0 and stats.running == 0:
                break
            await asyncio.sleep(0.1)
        busy_after = machine_busy()
        cpu = sum(process_cpu(p.pid) - c for p, c in zip(workers.procs, cpu_before, strict=True))
        spans = [await wf.wait_for(f"run-{i}", timeout=60) for i in range(runs)]
    finally:
        workers.stop()
        await wf.close()
    began = min(s[0] for s in spans)
    ended = max(s[1] for s in spans)
    busy, total = (after - before for after, before in zip(busy_after, busy_before, strict=True))
    return {
        "runs_per_s": runs / (ended - began),
        "steps_per_s": 3 * runs / (ended - began),
        "startup_s": began - went,
        "runs": runs,
        "worker_cpu_ms_per_run": cpu / runs * 1e3,
        "machine_busy": busy / total if total else 0.0,
    }


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU of the machine so far: whoever used them."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


# -- one claim ---------------------------------------------------------------------------------------

CLAIM_LIMITS = {
    "none": QueueLimits(),
    "concurrency": QueueLimits(concurrency=NEVER),
    "partition": QueueLimits(concurrency=NEVER, partition_concurrency=NEVER),
    "rate": QueueLimits(rate_limit=(NEVER, 60.0)),
}


async def claims(store: Store, count: int) -> dict[str, float]:
    now = time.time()
    for variant in CLAIM_LIMITS:
        for i in range(count):
            run = pending(f"{variant}-{i:05d}", now + i * 1e-6)
            entry = QueuedRun(run.run_id, variant, partition_key=f"p{i % 10}", enqueued_at=run.created_at)
            await store.enqueue_run(run, entry)
    timings: dict[str, list[float]] = {variant: [] for variant in CLAIM_LIMITS}
    for _ in range(count):
        for variant, limits in CLAIM_LIMITS.items():
            started = time.perf_counter()
            [(_, lease)] = await store.claim_queued(variant, time.time(), "bench", 30.0, limits)
            timings[variant].append((time.perf_counter() - started) * 1e6)
            await store.update_run(lease, RunStatus.COMPLETED, result="null", release=True)
    return {variant: statistics.median(values) for variant, values in timings.items()}


async def round_trip(store: Store) -> float | None:
    """µs of the store's bare round trip (``SELECT 1``, ``PING``); ``None`` without a server."""
    pool = getattr(store, "pool", None) or getattr(store, "_pool", None)
    client = getattr(store, "client", None)
    values = []
    for _ in range(200):
        started = time.perf_counter()
        if pool is not None:
            await pool.fetchval("SELECT 1")
        elif client is not None:
            await client.ping()
        else:
            return None
        values.append((time.perf_counter() - started) * 1e6)
    return statistics.median(values)


async def durable_claims(name: str, count: int) -> dict[str, Any]:
    from _stores import fresh_store as fresh_store_object

    async with fresh_store_object(name, "qclaim") as store:
        result: dict[str, Any] = {f"claim_us_{k}": v for k, v in (await claims(store, count)).items()}
        result["round_trip_us"] = await round_trip(store)
    return result


# -- the store's own notification ------------------------------------------------------------------


async def notify_floor(name: str, url: str, samples: int) -> float:
    """Median ms from a write to another connection noticing it, on the store's own mechanism."""
    values: list[float] = []
    if name == "memory":
        for _ in range(samples):
            event = asyncio.Event()
            waiter = asyncio.ensure_future(event.wait())
            await asyncio.sleep(0)
            sent = time.monotonic()
            event.set()
            await waiter
            values.append((time.monotonic() - sent) * 1e3)
    elif name == "postgres":
        import asyncpg

        listener, sender = await asyncpg.connect(url), await asyncpg.connect(url)
        heard: asyncio.Queue[float] = asyncio.Queue()
        await listener.add_listener("bench", lambda *_: heard.put_nowait(time.monotonic()))
        for _ in range(samples):
            sent = time.monotonic()
            await sender.execute("NOTIFY bench, 'q'")
            values.append((await heard.get() - sent) * 1e3)
            await asyncio.sleep(0.02)
        await listener.close()
        await sender.close()
    elif name == "redis":
        import redis.asyncio as aioredis

        base = url.split("?", 1)[0]
        subscriber, publisher = aioredis.Redis.from_url(base), aioredis.Redis.from_url(base)
        pubsub = subscriber.pubsub()
        await pubsub.subscribe("durable-bench-notify")
        await pubsub.get_message(timeout=1.0)  # the subscription's confirmation
        for _ in range(samples):
            sent = time.monotonic()
            await publisher.publish("durable-bench-notify", "q")
            while await pubsub.get_message(timeout=1.0) is None:
                pass
            values.append((time.monotonic() - sent) * 1e3)
            await asyncio.sleep(0.02)
        await pubsub.aclose()
        await subscriber.aclose()
        await publisher.aclose()
    elif name == "sqlite":
        values = await asyncio.to_thread(_sqlite_watch, url, samples)
    return statistics.median(values)


def _sqlite_watch(url: str, samples: int) -> list[float]:
    import sqlite3
    import threading

    from durable_sqlite._watcher import WATCH_INTERVAL

    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    writer = sqlite3.connect(path, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE IF NOT EXISTS bench_notify (n)")
    writer.commit()
    values: list[float] = []
    for n in range(samples):
        seen = threading.Event()
        noticed: list[float] = []

        def watch(seen: threading.Event = seen, noticed: list[float] = noticed) -> None:
            reader = sqlite3.connect(path)
            version = reader.execute("PRAGMA data_version").fetchone()[0]
            seen.set()
            while reader.execute("PRAGMA data_version").fetchone()[0] == version:
                time.sleep(WATCH_INTERVAL)
            noticed.append(time.monotonic())
            reader.close()

        thread = threading.Thread(target=watch)
        thread.start()
        seen.wait()
        time.sleep(WATCH_INTERVAL * (n % 10) / 10)  # at every phase of the watcher's interval
        sent = time.monotonic()
        writer.execute("INSERT INTO bench_notify VALUES (?)", (n,))
        writer.commit()
        thread.join()
        values.append((noticed[0] - sent) * 1e3)
    writer.close()
    return values


# -- driving ---------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[queues {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure_durable(name: str, plan: dict[str, int], backends: dict[str, Any]) -> dict[str, Any]:
    # One event loop per phase: run.fresh_store makes and drops Postgres databases with asyncio.run.
    result: dict[str, Any] = {"engine": "durable", "store": name}
    with fresh_store(name, "durable", backends) as url:
        result["notify_ms"] = asyncio.run(notify_floor(name, url, plan["samples"]))
    with fresh_store(name, "durable", backends) as url:
        result.update(asyncio.run(latency(url, plan["samples"], in_process=name == "memory")))
    if name != "memory":
        for limited in (False, True):
            for processes in (1, 2, 4) if not limited else (1, 4):
                with fresh_store(name, "durable", backends) as url:
                    key = f"{processes}w" + ("_limited" if limited else "")
                    log(f"durable {name}: throughput {key}")
                    result[key] = asyncio.run(throughput(url, processes, plan["runs"], limited))
    result.update(asyncio.run(durable_claims(name, plan["claims"])))
    return result


def measure_dbos(name: str, plan: dict[str, int], backends: dict[str, Any], venvs: Path) -> dict[str, Any]:
    python = make_venv(venvs / "dbos", sys.executable, ["dbos"])
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    result: dict[str, Any] = {"engine": f"dbos {version}", "store": name}
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PYTHONPATH"] = str(ADAPTERS)
    for shape in ("latency", "throughput"):
        with fresh_store(name, "dbos", backends) as url:
            command = [python, str(ADAPTERS / "dbos_queues.py"), shape, url, json.dumps(plan)]
            proc = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=1800, cwd=tempfile.gettempdir()
            )
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if not lines:
                result[f"{shape}_failed"] = proc.stderr[-1500:]
                continue
            result.update(json.loads(lines[-1]))
    return result


def render(results: list[dict[str, Any]]) -> str:
    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"

    def rate(entry: Any) -> str:
        return "-" if not isinstance(entry, dict) else f"{entry['runs_per_s']:,.0f}"

    def cpu(entry: Any) -> str:
        value = entry.get("worker_cpu_ms_per_run") if isinstance(entry, dict) else None
        return "-" if value is None else f"{value:.2f}"

    def share(entry: Any) -> str:
        value = entry.get("machine_busy") if isinstance(entry, dict) else None
        return "-" if value is None else f"{value:.0%}"

    rows = [
        "| store | engine | notify p50 ms | start() p50 ms | enqueue→first step p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r['store']} | {r['engine']} | {ms(r.get('notify_ms'))} | {ms(r.get('start_call_p50_ms'))} "
            f"| {ms(r.get('p50_ms'))} | {ms(r.get('p99_ms'))} |"
        )
        if "default_poll_p50_ms" in r:
            rows.append(
                f"| {r['store']} | {r['engine']}, default poll 1 s | - | - "
                f"| {ms(r['default_poll_p50_ms'])} | {ms(r['default_poll_p99_ms'])} |"
            )
    rows += [
        "",
        "| store | engine | 1 worker runs/s | 2 workers | 4 workers | 4 / 1 "
        "| 1 worker, limit | 4 workers, limit | worker CPU ms/run (1 / 4) | machine busy (1 / 4) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        one, four = r.get("1w"), r.get("4w")
        if one is None:
            continue
        scale = f"{four['runs_per_s'] / one['runs_per_s']:.2f}" if one and four else "-"
        rows.append(
            f"| {r['store']} | {r['engine']} | {rate(one)} | {rate(r.get('2w'))} | {rate(four)} | {scale} "
            f"| {rate(r.get('1w_limited'))} | {rate(r.get('4w_limited'))} "
            f"| {cpu(one)} / {cpu(four)} | {share(one)} / {share(four)} |"
        )
    rows += [
        "",
        "| store | claim, no limit µs | concurrency | partition | rate | bare round trip µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "claim_us_none" in r:
            values = [r[f"claim_us_{k}"] for k in CLAIM_LIMITS]
            rows.append(
                f"| {r['store']} | "
                + " | ".join(f"{v:,.0f}" for v in values)
                + f" | {ms(r['round_trip_us'])} |"
            )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default="memory,sqlite,postgres,redis")
    parser.add_argument("--engines", default="durable,dbos")
    parser.add_argument("--quick", action="store_true", help="fewer samples and runs (a smoke run)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--samples", type=int, default=None, help="latency samples per store (60; quick 10)")
    parser.add_argument("--runs", type=int, default=None, help="runs per throughput pass (800; quick 100)")
    parser.add_argument("--venvs", default=os.path.join(tempfile.gettempdir(), "durable-bench-venvs"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--limited", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.limited)
        return 0
    plan = (
        {"samples": 10, "runs": 100, "claims": 50}
        if args.quick
        else {"samples": 60, "runs": 800, "claims": 300}
    )
    plan.update({k: v for k, v in (("samples", args.samples), ("runs", args.runs)) if v})
    _, backends = durable_stores()
    engines = args.engines.split(",")
    results = []
    for name in args.stores.split(","):
        backend = backends.get(name)
        if "durable" in engines:
            if backend is None or Capability.QUEUES not in backend.capabilities:
                log(f"durable {name}: skipped (not installed, or no Capability.QUEUES)")
            else:
                log(f"durable {name}")
                results.append(measure_durable(name, plan, backends))
        if "dbos" in engines and name in ("sqlite", "postgres"):
            log(f"dbos {name}")
            results.append(measure_dbos(name, plan, backends, Path(args.venvs)))
    for r in results:
        failed = {k: v for k, v in r.items() if k.endswith("_failed")}
        if failed:
            log(f"{r['engine']} {r['store']} failed: {failed}")
    report = {"machine": machine(), "plan": plan, "results": results}
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    with contextlib.suppress(Exception):
        print(f"\nload average: {os.getloadavg()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
