"""The queue benchmark runs end to end on the memory store and reports every measurement.

No speed is asserted here (see benchmarks/README.md, "Queues"): this only keeps
``benchmarks/queues.py`` working as the engine changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

QUEUES = Path(__file__).resolve().parent.parent / "benchmarks" / "queues.py"


def test_the_queue_benchmark_reports_latency_and_claim_costs_on_the_memory_store(tmp_path: Path) -> None:
    out = tmp_path / "queues.json"
    command = [sys.executable, str(QUEUES), "--quick", "--stores", "memory", "--engines", "durable"]
    result = subprocess.run(
        [*command, "--samples", "3", "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [memory] = json.loads(out.read_text())["results"]
    assert (memory["engine"], memory["store"], memory["samples"]) == ("durable", "memory", 3)
    for metric in ("notify_ms", "p50_ms", "p99_ms", "claim_us_none", "claim_us_concurrency"):
        assert memory[metric] > 0, metric
    assert memory["p99_ms"] >= memory["p50_ms"]
    assert "| memory | durable |" in result.stdout  # the README's table, printed
