"""The worker processes the queue benchmarks start and their percentiles, shared by
``benchmarks/queues.py`` and ``adapters/dbos_queues.py`` (which runs in the DBOS venv, without
durable: standard library only)."""

from __future__ import annotations

import subprocess


class WorkerProcesses:
    """``count`` processes of ``command``, each printing ``ready`` once it serves, then waiting for a
    ``go`` line on its stdin (so every worker is up before the clock starts)."""

    def __init__(self, command: list[str], count: int) -> None:
        self.procs = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for _ in range(count)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"worker exited with {proc.wait()}")

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def terminate(self, grace: float = 20) -> None:
        """SIGTERM each, then SIGKILL any still running after ``grace`` seconds."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()

    def kill(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=20)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
