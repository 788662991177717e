"""What a `durable` command costs before it does anything (issue 16, item 14).

    python benchmarks/startup.py [--rounds N] [--json FILE]

Times whole processes, as a user's shell starts them: `python -c pass` (the interpreter's own
floor), `durable --help`, and `durable runs list` on a SQLite store of 20 runs. Each figure is
the median of ``--rounds`` runs after two warm-up runs (so compiled bytecode is cached, as it is
after an install). The goal is under 0.3 s for both commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 0.3
DURABLE = [sys.executable, "-c", "from durable.cli import main; main()"]


def _seconds(command: list[str], rounds: int) -> float:
    for _ in range(2):
        subprocess.run(command, check=True, capture_output=True)
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def _fill(path: Path) -> None:
    from durable import Workflow

    wf = Workflow("startup", db=f"sqlite:///{path}")

    @wf.workflow(id="run-{n}")
    async def job(n: int) -> int:
        return n

    for n in range(20):
        await job(n)
    await wf.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "startup.db"
        asyncio.run(_fill(store))
        figures = {
            "python -c pass": _seconds([sys.executable, "-c", "pass"], args.rounds),
            "durable --help": _seconds([*DURABLE, "--help"], args.rounds),
            "durable runs list (SQLite, 20 runs)": _seconds(
                [*DURABLE, "runs", "list", "--store", f"sqlite:///{store}"], args.rounds
            ),
        }
    for name, seconds in figures.items():
        mark = "" if name.startswith("python") else ("  ok" if seconds < GOAL_SECONDS else "  over the goal")
        print(f"{name:40} {seconds * 1000:8.0f} ms{mark}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
