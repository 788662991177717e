"""Scenario driver shared by every adapter. Standard library only: it runs in each peer's venv.

An adapter subclasses ``Engine`` (a handful of primitives: a workflow of ``n`` trivial sequential
steps, a workflow waiting for signals, a signal sender) and calls ``main(EngineClass)``. One
invocation runs one scenario once (one repeat) against one store URL and prints one JSON object
on its last stdout line. Multi-process scenarios (E, F) re-execute the same script in other roles.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

RESULT_MARK = "@@BENCH-RESULT@@ "


def settled_clock() -> float:
    """``time.perf_counter()``, read after a full garbage collection.

    A timed pass here lasts tens of milliseconds, about as long as one full collection of a
    freshly imported heap (measured: 15-20 ms), so whether such a collection fell inside the
    window would decide the result (B: about 43,000 or 85,000 steps/s on the memory store).
    Every timed pass starts from a collected heap, for every engine alike; scenario C, with
    10,000 runs, shows throughput with the collections that a long run pays.
    """
    gc.collect()
    return time.perf_counter()


class NotSupported(Exception):
    """The engine cannot express this scenario (reported as n/a with the message)."""


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Engine:
    """What an adapter implements. Run ids are unique per repeat (the store is fresh anyway)."""

    name = "engine"
    multi_process = True

    def __init__(self, store_url: str, role: str) -> None:
        self.store_url = store_url
        self.role = role

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def chain(self, run_id: str, steps: int, fail: bool = False) -> None:
        """Run (or resume) workflow ``run_id`` of ``steps`` sequential trivial steps.

        With ``fail`` the workflow raises ``RuntimeError`` after its last step (so a later call replays).
        """
        raise NotImplementedError

    async def replay_chain(self, run_id: str, steps: int) -> float:
        """Seconds to replay ``steps`` recorded steps of ``run_id`` (recorded by ``chain(fail=True)``)."""
        start = settled_clock()
        await self.chain(run_id, steps, fail=False)
        return time.perf_counter() - start

    async def waiter(self, run_id: str, rounds: int, resumed: Callable[[int, Any], Awaitable[None]]) -> None:
        """Workflow waiting for signals ``s0 .. s{rounds-1}`` in turn; ``resumed(i, payload)`` after each."""
        raise NotImplementedError

    async def send(self, run_id: str, index: int, payload: dict[str, Any]) -> None:
        """Deliver signal ``s{index}`` to ``run_id`` from this (other) process."""
        raise NotImplementedError


# -- scenarios ------------------------------------------------------------------------


async def _gather_counted(coros: list[Awaitable[None]], limit: int | None = None) -> tuple[int, list[str]]:
    if limit is not None:
        sem = asyncio.Semaphore(limit)

        async def bounded(c: Awaitable[None]) -> None:
            async with sem:
                await c

        coros = [bounded(c) for c in coros]
    results = await asyncio.gather(*coros, return_exceptions=True)
    errors = [f"{type(r).__name__}: {r}"[:200] for r in results if isinstance(r, BaseException)]
    return len(errors), sorted(set(errors))[:5]


async def _record_then_replay(engine: Engine, run_id: str, n: int) -> tuple[float, float]:
    """Seconds to record ``n`` steps of a new run, then to replay them."""
    start = settled_clock()
    try:
        await engine.chain(run_id, n, fail=True)
    except RuntimeError as exc:
        if "bench: fail at end" not in str(exc):
            raise
    first = time.perf_counter() - start
    return first, await engine.replay_chain(run_id, n)


async def scenario_a(engine: Engine, p: dict[str, Any]) -> dict[str, Any]:
    n = p["steps"]
    # Untimed warm-up (see scenario_b): the same record-then-replay, as long as the timed one, so
    # that the timed pass writes to a store already in use. A fresh SQLite file grows its WAL over
    # the first thousand commits, and each fsync then also flushes the file's new size; the floors
    # (floors.py) are measured past that too. The JSON keeps the warm-up's rates as cold_*.
    cold_first, cold_replay = await _record_then_replay(engine, "a-warm", n)
    first, replay = await _record_then_replay(engine, "a-1", n)
    return {
        "us_per_new_step": first / n * 1e6,
        "us_per_replayed_step": replay / n * 1e6,
        "steps_per_s": n / first,
        "cold_us_per_new_step": cold_first / n * 1e6,
        "cold_us_per_replayed_step": cold_replay / n * 1e6,
        "errors": 0,
    }


async def _concurrent(engine: Engine, workflows: int, steps: int, prefix: str) -> dict[str, Any]:
    start = settled_clock()
    errors, samples = await _gather_counted([engine.chain(f"{prefix}-{i}", steps) for i in range(workflows)])
    elapsed = time.perf_counter() - start
    done = (workflows - errors) * steps
    return {
        "steps_per_s": done / elapsed,
        "us_per_step": elapsed / (workflows * steps) * 1e6,
        "wall_s": elapsed,
        "errors": errors,
        "error_samples": samples,
    }


async def scenario_b(engine: Engine, p: dict[str, Any]) -> dict[str, Any]:
    # A pass of 1,000 steps lasts a few tens of ms, so the one-off costs of a fresh process
    # (its first full garbage collection of the imported heap, first prepared statements)
    # would be most of what it measures. The first pass warms up, untimed; the JSON keeps
    # its rate as cold_steps_per_s.
    cold = await _concurrent(engine, p["workflows"], p["steps"], "b-warm")
    result = await _concurrent(engine, p["workflows"], p["steps"], "b")
    result["cold_steps_per_s"] = cold["steps_per_s"]
    result["errors"] += cold["errors"]
    return result


async def scenario_c(engine: Engine, p: dict[str, Any]) -> dict[str, Any]:
    return await _concurrent(engine, p["workflows"], p["steps"], "c")


async def scenario_d(engine: Engine, p: dict[str, Any]) -> dict[str, Any]:
    n = p["workflows"]
    await engine.chain("d-warm", 1)
    errors = 0
    start = settled_clock()
    for i in range(n):
        try:
            await engine.chain(f"d-{i}", 1)
        except Exception:
            errors += 1
    elapsed = time.perf_counter() - start
    return {"us_per_workflow": elapsed / n * 1e6, "workflows_per_s": n / elapsed, "errors": errors}


def _child(role: str, args: argparse.Namespace, extra: list[str] = ()) -> subprocess.Popen[str]:  # type: ignore[assignment]
    cmd = [sys.executable, sys.argv[0], "--scenario", args.scenario, "--store", args.store]
    cmd += ["--params", args.params, "--role", role, *extra]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)


async def _readline(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    if not line:
        raise RuntimeError(f"child process exited (code {proc.wait()}) before answering")
    return line.strip()


async def _expect(proc: subprocess.Popen[str], prefix: str) -> str:
    while True:  # skip anything a library prints on stdout
        line = await _readline(proc)
        if line.startswith(prefix):
            return line[len(prefix) :].strip()


def _tell(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


async def scenario_e(engine: Engine, p: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if not engine.multi_process:
        raise NotSupported("the store lives in one process")
    rounds, gap = p["rounds"], p["gap_s"]
    latencies: list[float] = []
    sender = _child("sender", args)
    try:
        await _expect(sender, "ready")
        next_round = asyncio.Event()

        async def resumed(i: int, payload: Any) -> None:
            latencies.append(time.monotonic() - float(payload["t"]))
            next_round.set()

        task = asyncio.ensure_future(engine.waiter("e-1", rounds, resumed))
        for i in range(rounds):
            await asyncio.sleep(gap)  # the waiter is parked in its wait, its pollers at steady state
            if task.done():
                task.result()
            next_round.clear()
            _tell(sender, f"send {i}")
            await asyncio.wait_for(next_round.wait(), timeout=p["timeout_s"])
        await asyncio.wait_for(task, timeout=p["timeout_s"])
        _tell(sender, "quit")
        sender.wait(timeout=30)
    finally:
        if sender.poll() is None:
            sender.kill()
    latencies.sort()
    return {
        "ms_round_trip": latencies[len(latencies) // 2] * 1e3,
        "ms_round_trip_max": latencies[-1] * 1e3,
        "rounds": rounds,
        "errors": 0,
    }


async def role_sender(engine: Engine) -> None:
    await engine.open()
    try:
        print("ready", flush=True)
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if not line or line == "quit":
                return
            index = int(line.split()[1])
            await engine.send("e-1", index, {"t": time.monotonic()})
    finally:
        await engine.close()


async def scenario_f(engine: Engine, p: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if not engine.multi_process:
        raise NotSupported("the store lives in one process")
    procs = [_child("f-worker", args, ["--index", str(k)]) for k in range(p["processes"])]
    try:
        for proc in procs:
            await _expect(proc, "ready")
        start = time.monotonic()
        for proc in procs:
            _tell(proc, "go")
        reports = [json.loads(await _expect(proc, "done")) for proc in procs]
        elapsed = time.monotonic() - start
        for proc in procs:
            proc.wait(timeout=60)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    total = p["processes"] * p["workflows"]
    errors = sum(r["errors"] for r in reports)
    return {
        "steps_per_s": (total - errors) * p["steps"] / elapsed,
        "workflows_per_s": (total - errors) / elapsed,
        "wall_s": elapsed,
        "errors": errors,
        "error_samples": sorted({s for r in reports for s in r["samples"]})[:5],
        "child_peak_rss_mb": max(r["rss"] for r in reports),
    }


async def role_f_worker(engine: Engine, p: dict[str, Any], index: int) -> None:
    await engine.open()
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        coros = [engine.chain(f"f-{index}-{i}", p["steps"]) for i in range(p["workflows"])]
        errors, samples = await _gather_counted(coros, limit=p["concurrency"])
        report = {"errors": errors, "samples": samples, "rss": peak_rss_mb()}
        print("done " + json.dumps(report), flush=True)
    finally:
        await engine.close()


SCENARIOS = {"A": scenario_a, "B": scenario_b, "C": scenario_c, "D": scenario_d}


async def _main(engine_class: type[Engine], args: argparse.Namespace) -> dict[str, Any]:
    params = json.loads(args.params)
    engine = engine_class(args.store, args.role)
    if args.role == "sender":
        await role_sender(engine)
        return {}
    if args.role == "f-worker":
        await role_f_worker(engine, params, args.index)
        return {}
    if args.scenario in ("E", "F") and not engine.multi_process:
        raise NotSupported("the store lives in one process; other processes cannot share it")
    rss_before = peak_rss_mb()
    if args.scenario == "F":  # the parent only coordinates; the workers open the store
        result = await scenario_f(engine, params, args)
    else:
        await engine.open()
        try:
            if args.scenario == "E":
                result = await scenario_e(engine, params, args)
            else:
                result = await SCENARIOS[args.scenario](engine, params)
        finally:
            await engine.close()
    result["peak_rss_mb"] = result.pop("child_peak_rss_mb", None) or peak_rss_mb()
    result["rss_growth_mb"] = peak_rss_mb() - rss_before
    return result


def main(engine_class: type[Engine]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", required=True, choices=["A", "B", "C", "D", "E", "F"])
    parser.add_argument("--store", required=True)
    parser.add_argument("--params", default="{}")
    parser.add_argument("--role", default="main", choices=["main", "sender", "f-worker"])
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    try:
        result = asyncio.run(_main(engine_class, args))
    except NotSupported as exc:
        result = {"na": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        result = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
    if args.role == "main":
        print(RESULT_MARK + json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # do not wait for library threads (pools, listeners) left behind
