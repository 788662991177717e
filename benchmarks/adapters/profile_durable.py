"""Profile durable on one scenario with pyinstrument (installed by ``run.py --profile``).

Scenario A profiles the first run only (new steps); the others profile the whole scenario.
Writes a text report to $BENCH_PROFILE_TEXT and an HTML one to $BENCH_PROFILE_HTML.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from _harness import SCENARIOS
from durable_adapter import DurableEngine
from pyinstrument import Profiler


async def profiled(scenario: str, store: str, params: dict[str, Any]) -> tuple[Profiler, str]:
    engine = DurableEngine(store, "main")
    await engine.open()
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    try:
        if scenario == "A":
            await engine.chain("warm", 10)
            steps = params["steps"]
            profiler.start()
            start = time.perf_counter()
            await engine.chain("profiled", steps)
            elapsed = time.perf_counter() - start
            profiler.stop()
            summary = f"{steps} new steps: {elapsed / steps * 1e6:.1f} µs per step (under the profiler)"
        else:
            profiler.start()
            result = await SCENARIOS[scenario](engine, params)
            profiler.stop()
            summary = json.dumps(result)
    finally:
        await engine.close()
    return profiler, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--params", default="{}")
    args = parser.parse_args()
    profiler, summary = asyncio.run(profiled(args.scenario, args.store, json.loads(args.params)))
    text = summary + "\n" + profiler.output_text(unicode=True, color=False, show_all=False)
    with open(os.environ["BENCH_PROFILE_TEXT"], "w", encoding="utf-8") as fh:
        fh.write(text)
    with open(os.environ["BENCH_PROFILE_HTML"], "w", encoding="utf-8") as fh:
        fh.write(profiler.output_html())


if __name__ == "__main__":
    main()
