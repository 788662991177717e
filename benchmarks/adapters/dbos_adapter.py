"""Adapter for DBOS Transact from PyPI (its own venv), with its SQLite or Postgres system database.

DBOS runs with its defaults (for SQLite: rollback journal, ``synchronous=FULL``).
Replay: a DBOS workflow that raised is recorded as failed and is not re-executed when called again,
so replay is measured the way DBOS recovers: a first process records every step and exits without
finishing the workflow (``os._exit``); a second one with the same executor id launches, its startup
recovery re-enqueues the run, and the time from the workflow body's start to its last step is the
replay (the recovery queue's polling delay before the body starts is left out).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Engine, NotSupported, main, settled_clock
from dbos import DBOS, DBOSClient, DBOSConfig, SetWorkflowID


def _system_url(url: str) -> str:
    if url.startswith("sqlite:"):
        return url.split("?", 1)[0]
    if url.startswith(("postgresql:", "postgres:")):
        return url
    raise NotSupported(f"DBOS has no {url.split(':', 1)[0]} system database")


REPLAY_SECONDS: list[float] = []
"""Seconds from the workflow body's start to its last step, per execution (in this process)."""
REPLAYED = threading.Event()  # set from DBOS's own event-loop thread


class DBOSEngine(Engine):
    name = "dbos"

    def __init__(self, store_url: str, role: str) -> None:
        super().__init__(store_url, role)
        self.system_url = _system_url(store_url)
        self.on_resume: Callable[[int, Any], Awaitable[None]] | None = None
        self.exit_at_end = False
        self.t0 = 0.0
        self.client: DBOSClient | None = None

        @DBOS.step()
        async def step(i: int) -> int:
            return i

        @DBOS.workflow()
        async def chain(steps: int) -> int:
            start = time.perf_counter()
            for i in range(steps):
                await step(i)
            REPLAY_SECONDS.append(time.perf_counter() - start)
            REPLAYED.set()
            if self.exit_at_end:
                print(f"timing {time.perf_counter() - self.t0}", flush=True)
                os._exit(0)  # a crash: the run stays pending with every step recorded
            return steps

        @DBOS.workflow()
        async def waiter(rounds: int) -> int:
            for i in range(rounds):
                payload = await DBOS.recv_async(f"s{i}", timeout_seconds=600)
                assert self.on_resume is not None
                await self.on_resume(i, payload)
            return rounds

        self._chain, self._waiter = chain, waiter

    async def open(self) -> None:
        if self.role == "sender":  # a sender outside the app, as a webhook would be
            self.client = DBOSClient(system_database_url=self.system_url)
            return
        executor = os.environ.get("BENCH_DBOS_EXECUTOR", f"bench-{self.role}-{os.getpid()}")
        config: DBOSConfig = {
            "name": "bench",
            "system_database_url": self.system_url,
            "executor_id": executor,
            "application_version": "bench",  # recovery matches versions; do not hash the source
            "log_level": "ERROR",
        }
        DBOS(config=config)
        DBOS.launch()
        logging.getLogger("dbos").setLevel(logging.ERROR)

    async def close(self) -> None:
        if self.client is not None:
            self.client.destroy()
        else:
            DBOS.destroy()

    async def chain(self, run_id: str, steps: int, fail: bool = False) -> None:
        with SetWorkflowID(run_id):
            await self._chain(steps)

    async def replay_chain(self, run_id: str, steps: int) -> float:
        raise AssertionError("replaced by scenario A's two-process form")

    async def waiter(self, run_id: str, rounds: int, resumed: Callable[[int, Any], Awaitable[None]]) -> None:
        self.on_resume = resumed
        with SetWorkflowID(run_id):
            await self._waiter(rounds)

    async def send(self, run_id: str, index: int, payload: dict[str, Any]) -> None:
        assert self.client is not None
        await self.client.send_async(run_id, payload, f"s{index}")


def _scenario_a(url: str, params: dict[str, Any]) -> dict[str, Any]:
    steps = params["steps"]
    os.environ["BENCH_DBOS_EXECUTOR"] = f"bench-a-{os.getpid()}"
    recorder = subprocess.run(
        [sys.executable, __file__, "--record", url, str(steps)], capture_output=True, text=True, timeout=900
    )
    lines = [line for line in recorder.stdout.splitlines() if line.startswith("timing ")]
    if not lines:
        raise RuntimeError(f"recording process failed: {recorder.stderr[-500:]}")
    first = float(lines[-1].split()[1])

    async def replay() -> float:
        engine = DBOSEngine(url, "replayer")
        await engine.open()  # launch: startup recovery re-enqueues the pending run
        await asyncio.to_thread(REPLAYED.wait, 300)
        await engine.close()
        if not REPLAY_SECONDS:
            raise RuntimeError("the crashed run was not recovered within 300 s")
        return REPLAY_SECONDS[0]

    replayed = asyncio.run(replay())
    return {
        "us_per_new_step": first / steps * 1e6,
        "us_per_replayed_step": replayed / steps * 1e6,
        "steps_per_s": steps / first,
        "errors": 0,
        "note": "replay: recovery of a crashed run by a new process (body time)",
    }


def _record_main(url: str, steps: int) -> None:
    async def go() -> None:
        engine = DBOSEngine(url, "recorder")
        await engine.open()
        await engine.chain("a-warm", steps)  # as _harness.scenario_a warms up: as long as the timed pass
        engine.exit_at_end = True
        engine.t0 = settled_clock()
        await engine.chain("a-1", steps)

    asyncio.run(go())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--record":
        _record_main(sys.argv[2], int(sys.argv[3]))
    elif "--scenario" in sys.argv and sys.argv[sys.argv.index("--scenario") + 1] == "A":
        from _harness import RESULT_MARK, peak_rss_mb

        args = dict(zip(sys.argv[1::2], sys.argv[2::2], strict=False))
        try:
            _system_url(args["--store"])
            result = _scenario_a(args["--store"], json.loads(args.get("--params", "{}")))
            result["peak_rss_mb"] = peak_rss_mb()
        except NotSupported as exc:
            result = {"na": str(exc)}
        except Exception as exc:
            result = {"failed": f"{type(exc).__name__}: {exc}"[:300]}
        print(RESULT_MARK + json.dumps(result), flush=True)
        os._exit(0)
    else:
        main(DBOSEngine)
