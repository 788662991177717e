"""How long from ``wf.write_stream`` in one process to the item arriving in ``wf.read_stream`` in
another? (issue 18)

    python benchmarks/streams.py [--stores sqlite,postgres,redis] [--items 300] [--gaps 0.01,0]
                                 [--json FILE]

For every store, a writer process runs a workflow that waits for a signal, then appends
``--items`` items to a stream, one every gap of ``--gaps`` seconds (a row each; 0: back to back), each
carrying ``time.monotonic_ns()`` taken just before its ``write_stream`` call, and closes it. This
process (the reader) is already in ``read_stream`` when it sends the signal, and notes
``monotonic_ns()`` as each item arrives: the difference is the latency (``CLOCK_MONOTONIC`` is one
clock for every process of the host). It includes the append's commit and the wake-up path (SQLite's
change watcher, Postgres NOTIFY, Redis pub/sub) and the read, not the write's checkpoint, which
follows the append. The writer also reports how long each ``write_stream`` call took (append and
checkpoint). Printed: p50, p90, p99 and max of both, per store.

The memory store is left out: it lives in one process. Every store is fresh and removed
afterwards (``_stores.fresh_store``). A store without the ``streams`` capability is reported, not
run. Nothing is asserted: no timing is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stores import POSTGRES_URL, REDIS_URL, fresh_store, machine

from durable import Workflow
from durable.store import Capability, Store

STORES = ("sqlite", "postgres", "redis")
RUN_ID = "bench-stream"
KEY = "tokens"


def store_url(kind: str, store: Any) -> str:
    """The URL another process opens the same fresh store with."""
    if kind == "sqlite":
        return f"sqlite:///{store.path}"
    if kind == "postgres":
        return f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={store.schema}"
    return f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}prefix={store.prefix}&ttl=0"


def writer_app(url: str) -> tuple[Workflow, Any]:
    wf = Workflow("bench-streams", db=url)

    @wf.workflow(id="bench-{name}")
    async def feed(name: str, items: int, gap: float) -> list[int]:
        await wf.signal("go")
        took = []
        for i in range(items):
            if gap:
                await asyncio.sleep(gap)
            started = time.monotonic_ns()
            await wf.write_stream(KEY, {"i": i, "t": started})
            took.append(time.monotonic_ns() - started)
        await wf.close_stream(KEY)
        return took

    return wf, feed


async def write(url: str, items: int, gap: float) -> None:
    """The writer process: run the workflow here, print each write_stream call's ns as JSON."""
    wf, feed = writer_app(url)
    async with wf:
        took = await feed.run(RUN_ID, name="stream", items=items, gap=gap)
    print(json.dumps(took))


def percentiles(values_ns: list[int]) -> dict[str, float]:
    ms = sorted(v / 1e6 for v in values_ns)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": statistics.median(ms), "p90": cuts[89], "p99": cuts[98], "max": ms[-1]}


async def measure(kind: str, store: Store, items: int, gap: float) -> dict[str, Any]:
    url = store_url(kind, store)
    args = ["--writer", url, "--items", str(items), "--gaps", str(gap)]
    writer = await asyncio.create_subprocess_exec(sys.executable, __file__, *args, stdout=subprocess.PIPE)
    reader = Workflow("bench-streams", db=store)
    latencies: list[int] = []
    try:
        # Until the writer's run waits for "go" (a poll: nothing wakes a reader on a run's creation).
        while (run := await reader.get_run(RUN_ID)) is None or run.status != "waiting":  # noqa: ASYNC110
            await asyncio.sleep(0.01)

        async def read() -> None:
            async for _, item in reader.read_stream(RUN_ID, KEY):
                latencies.append(time.monotonic_ns() - item["t"])

        reading = asyncio.create_task(read())
        await asyncio.sleep(0.2)  # in its watch, past its first read
        await reader.complete(RUN_ID, "go", None)
        await asyncio.wait_for(reading, 600)
        out, _ = await writer.communicate()
    finally:
        if writer.returncode is None:
            writer.kill()
            await writer.wait()
    took = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "store": kind,
        "items": len(latencies),
        "gap_s": gap,
        "latency_ms": percentiles(latencies),
        "write_stream_ms": percentiles(took),
    }


async def bench(kinds: list[str], items: int, gaps: list[float]) -> list[dict[str, Any]]:
    rows = []
    for gap in gaps:
        for kind in kinds:
            try:
                async with fresh_store(kind, "streams") as store:
                    if Capability.STREAMS not in store.capabilities:
                        print(f"{kind}: no {Capability.STREAMS!r} capability, skipped", file=sys.stderr)
                        continue
                    rows.append(await measure(kind, store, items, gap))
            except (ImportError, OSError) as exc:
                print(f"{kind}: not run ({type(exc).__name__}: {exc})", file=sys.stderr)
                continue
            print(table_row(rows[-1]), flush=True)
    return rows


HEADER = (
    "| store | items | gap | latency p50 | p90 | p99 | max | write_stream p50 | p99 |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def table_row(row: dict[str, Any]) -> str:
    lat, took = row["latency_ms"], row["write_stream_ms"]
    return (
        f"| {row['store']} | {row['items']} | {row['gap_s'] * 1000:g} ms | {lat['p50']:.2f} ms | "
        f"{lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {took['p50']:.2f} ms | {took['p99']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--gaps", default="0.01,0", help="seconds between writes, one row each")
    parser.add_argument("--json", dest="json_file")
    parser.add_argument("--writer", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        asyncio.run(write(args.writer, args.items, float(args.gaps)))
        return
    kinds = [k for k in args.stores.split(",") if k]
    unknown = sorted(set(kinds) - set(STORES))
    if unknown:
        raise SystemExit(f"unknown store(s) {unknown}; choose from {', '.join(STORES)} (memory: one process)")
    print(HEADER)
    gaps = [float(g) for g in args.gaps.split(",") if g]
    rows = asyncio.run(bench(kinds, args.items, gaps))
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
