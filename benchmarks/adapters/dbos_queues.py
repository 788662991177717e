"""DBOS queues in the shapes of ``benchmarks/queues.py`` (runs in the DBOS venv; see that file).

    python dbos_queues.py latency URL PLAN_JSON       # prints one JSON object
    python dbos_queues.py throughput URL PLAN_JSON
    python dbos_queues.py worker URL POLL LIMITED     # a DBOS process serving the queue

URL is the system database (``sqlite:///...`` or ``postgresql://...``). Workers are DBOS processes
with their own executor ids, launched when told ``go``; enqueues come from a ``DBOSClient``, as
from an application that is not a DBOS process. Each shape runs twice: with DBOS's default
``polling_interval_sec=1.0`` and with 0.05 s (what a latency-minded user would set), and
``worker_concurrency=16`` (durable's default ``--concurrency``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

from _processes import WorkerProcesses, percentile  # this file's folder is on sys.path: a script
from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions

QUEUE = "bench"
NEVER = 1_000_000
WORKER_CONCURRENCY = 16
POLLS = (1.0, 0.05)
GAP = 0.2


def serve(url: str, poll: float, limited: bool) -> None:
    @DBOS.step()
    def first(i: int) -> float:
        return time.monotonic()

    @DBOS.step()
    def middle(i: int) -> int:
        return i

    @DBOS.step()
    def last(i: int) -> float:
        return time.time()

    @DBOS.workflow(name="latency")
    def latency(i: int) -> float:
        return first(i)

    @DBOS.workflow(name="chain")
    def chain(i: int) -> list[float]:
        began = time.time()
        first(i)
        middle(i)
        return [began, last(i)]

    config: DBOSConfig = {
        "name": "qbench",
        "system_database_url": url,
        "executor_id": f"qbench-{os.getpid()}",
        "application_version": "qbench",
        "log_level": "ERROR",
    }
    DBOS(config=config)
    print("ready", flush=True)
    sys.stdin.readline()
    DBOS.launch()
    DBOS.register_queue(
        QUEUE,
        global_concurrency=NEVER if limited else None,
        worker_concurrency=WORKER_CONCURRENCY,
        polling_interval_sec=poll,
        on_conflict="always_update",
    )
    logging.getLogger("dbos").setLevel(logging.ERROR)
    threading.Event().wait()  # until terminated


def options(name: str, run_id: str) -> EnqueueOptions:
    return {"workflow_name": name, "queue_name": QUEUE, "workflow_id": run_id, "app_version": "qbench"}


class Workers(WorkerProcesses):
    """DBOS worker processes of this adapter (``worker``), stopped with SIGKILL."""

    def __init__(self, url: str, count: int, poll: float, limited: bool = False) -> None:
        super().__init__([sys.executable, __file__, "worker", url, str(poll), "1" if limited else "0"], count)

    def stop(self) -> None:
        self.kill()


def latency(url: str, plan: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    client = DBOSClient(system_database_url=url)
    for poll in POLLS:
        workers = Workers(url, 1, poll)
        workers.go()
        try:
            time.sleep(2.0)  # launched and idle
            times = []
            for i in range(plan["samples"]):
                sent = time.monotonic()
                handle = client.enqueue(options("latency", f"lat-{poll}-{i}"), i)
                times.append((handle.get_result() - sent) * 1e3)
                time.sleep(GAP)
        finally:
            workers.stop()
        result[f"poll_{poll}"] = {"p50_ms": percentile(times, 0.5), "p99_ms": percentile(times, 0.99)}
    client.destroy()
    return result


def throughput(url: str, plan: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    # A client does not create the system database's tables: a launched process does.
    bootstrap = Workers(url, 1, POLLS[-1])
    bootstrap.go()
    time.sleep(3.0)
    bootstrap.stop()
    client = DBOSClient(system_database_url=url)
    poll = POLLS[-1]
    for limited in (False, True):
        for processes in (1, 2, 4) if not limited else (1, 4):
            key = f"{processes}w" + ("_limited" if limited else "")
            runs = plan["runs"]
            handles = [client.enqueue(options("chain", f"{key}-{i}"), i) for i in range(runs)]
            workers = Workers(url, processes, poll, limited)
            try:
                went = time.time()
                workers.go()
                spans = [handle.get_result() for handle in handles]
            finally:
                workers.stop()
            began, ended = min(s[0] for s in spans), max(s[1] for s in spans)
            result[key] = {
                "runs_per_s": runs / (ended - began),
                "steps_per_s": 3 * runs / (ended - began),
                "startup_s": began - went,
                "runs": runs,
                "poll_s": poll,
            }
    client.destroy()
    return result


def main() -> None:
    shape, url = sys.argv[1], sys.argv[2]
    if url.startswith("sqlite:"):  # DBOS's SQLite defaults (the benchmark's options are durable's)
        url = url.split("?", 1)[0]
    if shape == "worker":
        serve(url, float(sys.argv[3]), sys.argv[4] == "1")
        return
    plan = json.loads(sys.argv[3])
    logging.getLogger("dbos").setLevel(logging.ERROR)
    if shape == "latency":
        measured = latency(url, plan)
        fast = measured[f"poll_{POLLS[-1]}"]
        slow = measured[f"poll_{POLLS[0]}"]
        out = {
            "p50_ms": fast["p50_ms"],
            "p99_ms": fast["p99_ms"],
            "default_poll_p50_ms": slow["p50_ms"],
            "default_poll_p99_ms": slow["p99_ms"],
            "samples": plan["samples"],
        }
    else:
        out = throughput(url, plan)
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)  # do not wait for DBOS's threads


if __name__ == "__main__":
    main()
