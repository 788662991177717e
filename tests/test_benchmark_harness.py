"""The benchmark runs end to end on the memory store: every A and D measurement is reported.

No speed is asserted here (see benchmarks/README.md): this only keeps ``benchmarks/run.py`` and
its harness working as the engine changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_scenarios_a_and_d_run_on_the_memory_store_and_report_every_metric(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [sys.executable, str(RUN), "--engines", "durable", "--stores", "memory", "--scenarios", "AD"]
    result = subprocess.run(
        [*command, "--quick", "--repeats", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    runs = {r["scenario"]: r["runs"] for r in report["results"] if r["engine"] == "durable"}
    [a] = runs["A"]
    for metric in (
        "us_per_new_step",
        "us_per_replayed_step",
        "cold_us_per_new_step",
        "cold_us_per_replayed_step",
    ):
        assert a[metric] > 0, metric
    assert a["errors"] == 0
    [d] = runs["D"]
    assert d["us_per_workflow"] > 0 and d["errors"] == 0
    assert "fresh" in result.stdout  # the A table shows the warm-up's own numbers
