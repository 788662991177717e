"""Benchmark durable on every installed store, side by side with its peers.

    python benchmarks/run.py [--stores sqlite,memory,...] [--engines durable,python-durable,dbos]
                             [--scenarios ABCDEF] [--quick] [--repeats N] [--json out.json]
                             [--profile A [--profiler pyinstrument|py-spy]]

Each (engine, store, scenario, repeat) runs in a fresh process on a fresh store (a temporary file,
a temporary Postgres database, a Redis key prefix), removed afterwards. durable runs in this
interpreter's environment; each peer runs from PyPI in its own virtualenv that this script creates
with uv (cached under --venvs). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from floors import REFERENCE_US  # benchmarks/ is on sys.path: this file runs as a script

HERE = Path(__file__).resolve().parent
ADAPTERS = HERE / "adapters"
RESULT_MARK = "@@BENCH-RESULT@@ "

POSTGRES_URL = os.environ.get("DURABLE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DURABLE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ALL_STORES = ["sqlite", "sqlite-full", "memory", "postgres", "redis"]
ALL_SCENARIOS = "ABCDEF"

SCENARIO_TITLES = {
    "A": "one workflow, sequential trivial steps (first run, then replay), on a store in use; "
    "'fresh': the same, untimed warm-up on the fresh store in a fresh process",
    "B": "concurrent workflows x 10 steps",
    "C": "many concurrent workflows x 10 steps (errors counted)",
    "D": "workflow start overhead (1-step workflow, sequentially)",
    "E": "signal round trip: complete() in another process until the waiting workflow resumes",
    "F": "4 processes sharing one store",
}
# (metric key, column title, higher is better); the first one is compared across engines.
METRICS: dict[str, list[tuple[str, str, bool]]] = {
    "A": [("us_per_new_step", "µs/new step", False), ("us_per_replayed_step", "µs/replayed step", False),
          ("steps_per_s", "steps/s", True), ("cold_us_per_new_step", "new, fresh", False),
          ("cold_us_per_replayed_step", "replayed, fresh", False)],
    "B": [("steps_per_s", "steps/s", True), ("us_per_step", "µs/step (wall)", False)],
    "C": [("steps_per_s", "steps/s", True), ("wall_s", "wall s", False)],
    "D": [("us_per_workflow", "µs/workflow", False), ("workflows_per_s", "workflows/s", True)],
    "E": [("ms_round_trip", "ms round trip", False), ("ms_round_trip_max", "ms worst", False)],
    "F": [("steps_per_s", "steps/s (all)", True), ("workflows_per_s", "workflows/s", True)],
}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    params: dict[str, dict[str, Any]]
    repeats: dict[str, int]
    timeout: float


def make_plan(quick: bool, repeats: int | None) -> Plan:
    if quick:
        params = {
            "A": {"steps": 1000},
            "B": {"workflows": 100, "steps": 10},
            "C": {"workflows": 1000, "steps": 10},
            "D": {"workflows": 200},
            "E": {"rounds": 5, "gap_s": 0.2, "timeout_s": 30},
            "F": {"processes": 4, "workflows": 200, "steps": 3, "concurrency": 50},
        }
        reps = {"A": 3, "B": 3, "C": 2, "D": 3, "E": 2, "F": 2}
        timeout = 180.0
    else:
        params = {
            "A": {"steps": 1000},
            "B": {"workflows": 100, "steps": 10},
            "C": {"workflows": 10_000, "steps": 10},
            "D": {"workflows": 1000},
            "E": {"rounds": 10, "gap_s": 0.2, "timeout_s": 30},
            "F": {"processes": 4, "workflows": 1000, "steps": 3, "concurrency": 50},
        }
        reps = {"A": 5, "B": 5, "C": 3, "D": 5, "E": 3, "F": 3}
        timeout = 420.0
    if repeats is not None:
        reps = dict.fromkeys(reps, repeats)
    return Plan(params, reps, timeout)


# -- engines ----------------------------------------------------------------------------


@dataclass
class EngineSpec:
    name: str
    adapter: str
    stores: set[str]
    python: str | None = None  # None: not available
    skipped: str = ""
    repeat_cap: dict[str, int] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` (e.g. "3.12"): pyenv's, then PATH's."""
    candidates: list[str] = []
    pyenv = shutil.which("pyenv")
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    if pyenv:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True)
        roots.insert(0, out.stdout.strip())
    for root in filter(None, roots):
        candidates += sorted(
            glob.glob(os.path.join(root, "versions", f"{version}*", "bin", f"python{version}"))
        )
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(found)
    for candidate in candidates:
        out = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True
        )
        if out.returncode == 0 and out.stdout.decode().strip() == str(tuple(map(int, version.split(".")))):
            return candidate
    return None


def make_venv(directory: Path, python: str, requirements: list[str]) -> str:
    """Create (or reuse) a uv virtualenv with ``requirements``; returns its python."""
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is not installed (pip install uv)")
    marker = directory / ".bench-requirements"
    wanted = json.dumps([python, *requirements])
    venv_python = directory / "bin" / "python"
    if not (venv_python.exists() and marker.exists() and marker.read_text() == wanted):
        shutil.rmtree(directory, ignore_errors=True)
        subprocess.run([uv, "venv", "-q", "-p", python, str(directory)], check=True)
        env = {**os.environ, "VIRTUAL_ENV": str(directory)}
        subprocess.run([uv, "pip", "install", "-q", *requirements], check=True, env=env)
        marker.write_text(wanted)
    return str(venv_python)


def peer_engines(names: list[str], venvs: Path) -> list[EngineSpec]:
    specs: list[EngineSpec] = []
    if "python-durable" in names:
        spec = EngineSpec("python-durable 0.2.3", "python_durable_adapter.py", {"sqlite", "memory", "redis"})
        python = find_python("3.12")
        if python is None:
            spec.skipped = "Python 3.12 not found (pyenv or PATH); python-durable 0.2.3 requires >= 3.12"
        else:
            try:
                log("preparing the python-durable 0.2.3 venv")
                spec.python = make_venv(
                    venvs / "python-durable-0.2.3", python, ["python-durable==0.2.3", "redis"]
                )
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                spec.skipped = f"could not install python-durable==0.2.3: {exc}"
        spec.repeat_cap = {"C": 1}
        specs.append(spec)
    if "dbos" in names:
        spec = EngineSpec("dbos", "dbos_adapter.py", {"sqlite", "postgres"})
        try:
            log("preparing the dbos venv")
            spec.python = make_venv(venvs / "dbos", sys.executable, ["dbos"])
            out = subprocess.run(
                [spec.python, "-c", "import importlib.metadata as m; print(m.version('dbos'))"],
                capture_output=True, text=True,
            )  # fmt: skip
            spec.name = f"dbos {out.stdout.strip()}"
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            spec.skipped = f"could not install dbos: {exc}"
        spec.repeat_cap = {"C": 1}
        specs.append(spec)
    return specs


def durable_stores() -> tuple[set[str], dict[str, Any]]:
    """Store names of the durable plugins installed in this environment, and their backends."""
    try:
        from durable._plugins import get_plugin_manager
    except ImportError:
        return set(), {}
    backends = {name: backend for name, (backend, _) in get_plugin_manager().backends().items()}
    names = set(backends)
    if "sqlite" in names:
        names.add("sqlite-full")
    return names, backends


# -- stores -----------------------------------------------------------------------------


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def _pg_admin(sql: str) -> None:
    """Run one statement on the server's maintenance database (asyncpg if importable, else psql)."""
    admin = urlunsplit(urlsplit(POSTGRES_URL)._replace(path="/postgres"))
    try:
        import asyncio

        import asyncpg

        async def go() -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(go())
    except ImportError:
        subprocess.run(["psql", admin, "-q", "-c", sql], check=True, capture_output=True)


def _redis_delete(prefix_token: str) -> None:
    try:
        import redis
    except ImportError:
        cli = shutil.which("redis-cli")
        if cli:
            parts = urlsplit(REDIS_URL)
            base = [cli, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
            base += ["-n", parts.path.strip("/") or "0"]
            keys = subprocess.run(
                [*base, "--scan", "--pattern", f"*{prefix_token}*"], capture_output=True, text=True
            )
            for key in keys.stdout.split():
                subprocess.run([*base, "DEL", key], capture_output=True)
        return
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{prefix_token}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@contextmanager
def fresh_store(store: str, engine: str, backends: dict[str, Any]) -> Iterator[str]:
    token = "durbench" + secrets.token_hex(5)
    if store in ("sqlite", "sqlite-full"):
        directory = tempfile.mkdtemp(prefix="durable-bench-")
        mode = "full" if store == "sqlite-full" else "normal"
        try:
            yield f"sqlite:///{directory}/bench.db?synchronous={mode}"
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    elif store == "memory":
        yield "memory://"
    elif store == "postgres":
        _pg_admin(f"CREATE DATABASE {token}")
        try:
            yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{token}"))
        finally:
            _pg_admin(f"DROP DATABASE IF EXISTS {token} WITH (FORCE)")
    elif store == "redis":
        backend = backends.get("redis")
        isolate = getattr(backend, "isolated_url", None)
        if engine == "durable" and isolate is not None:
            url = isolate(REDIS_URL, token)
        else:
            url = f"{REDIS_URL}?prefix={token}"
        try:
            yield url
        finally:
            _redis_delete(token)
    else:
        raise ValueError(store)


# -- running ------------------------------------------------------------------------------


def run_once(python: str, adapter: str, scenario: str, url: str, params: dict[str, Any], timeout: float,
             prefix: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    cmd = [*(prefix or []), python, str(ADAPTERS / adapter), "--scenario", scenario, "--store", url]
    cmd += ["--params", json.dumps(params)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ADAPTERS)}
    env.pop("VIRTUAL_ENV", None)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tempfile.gettempdir()
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            if "failed" in result:
                result["stderr_tail"] = proc.stderr[-1500:]
            return result
    return {"failed": f"no result (exit {proc.returncode}): {proc.stderr[-800:]}"}


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    good = [r for r in runs if "failed" not in r and "na" not in r]
    keys = {k for r in good for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for key in sorted(keys):
        values = [float(r[key]) for r in good if key in r]
        median = statistics.median(values)
        summary[key] = {
            "median": median,
            "min": min(values),
            "max": max(values),
            "spread_pct": (max(values) - min(values)) / median * 100 if median else 0.0,
            "n": len(values),
        }
    return summary


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def aligned(table: list[list[str]]) -> list[str]:
    """``table``'s rows in aligned columns, a rule under the header. A short row (a status
    instead of the metric cells) spans the remaining columns and does not size them."""
    header = table[0]
    full = [row for row in table if len(row) == len(header)]
    widths = [max(len(str(row[i])) for row in full) for i in range(len(header))]
    lines = []
    for i, cells in enumerate(table):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render(results: list[dict[str, Any]], plan: Plan) -> str:
    lines: list[str] = []
    for scenario in ALL_SCENARIOS:
        rows = [r for r in results if r["scenario"] == scenario]
        if not rows:
            continue
        p = plan.params[scenario]
        lines.append("")
        lines.append(f"({scenario}) {SCENARIO_TITLES[scenario]}  {json.dumps(p)}")
        metrics = METRICS[scenario]
        header = ["store", "engine", *(f"{title} (median ±spread)" for _, title, _ in metrics)]
        header += ["peak RSS MB", "errors", "durable is"]
        table = [header]
        for row in rows:
            cells = [row["store"], row["engine"]]
            if row.get("status") != "ok":
                table.append([*cells, row["status"]])  # spans the metric columns
                continue
            summary = row["summary"]
            for key, _, _ in metrics:
                stat = summary.get(key)
                cells.append(f"{fmt(stat['median'])} ±{stat['spread_pct'] / 2:.0f}%" if stat else "-")
            rss = summary.get("peak_rss_mb")
            cells.append(fmt(rss["max"]) if rss else "-")
            errors = summary.get("errors")
            cells.append(f"{errors['max']:.0f}" if errors else "0")
            cells.append(row.get("ratio", ""))
            table.append(cells)
        lines += aligned(table)
        notes = {r["engine"]: r["note"] for r in rows if r.get("note")}
        for engine, note in notes.items():
            lines.append(f"  note ({engine}): {note}")
    return "\n".join(lines)


def add_ratios(results: list[dict[str, Any]]) -> None:
    """'durable is N x faster' on the scenario's first metric, against durable on the same store."""
    for row in results:
        if row["engine"] == "durable" or row.get("status") != "ok":
            continue
        key, _, higher_better = METRICS[row["scenario"]][0]
        base = next(
            (r for r in results if r["engine"] == "durable" and r["scenario"] == row["scenario"]
             and r["store"] == row["store"] and r.get("status") == "ok"), None,
        )  # fmt: skip
        if base is None or key not in base["summary"] or key not in row["summary"]:
            continue
        ours, theirs = base["summary"][key]["median"], row["summary"][key]["median"]
        if ours and theirs:
            factor = ours / theirs if higher_better else theirs / ours
            row["ratio"] = f"{factor:.1f}x faster" if factor >= 1 else f"{1 / factor:.1f}x slower"


# -- issue 4's targets, next to this machine's floors ---------------------------------------

# (scenario, store, metric, target, higher is better, floor that bounds it from below)
TARGETS: list[tuple[str, str, str, float, bool, str | None]] = [
    ("A", "sqlite", "us_per_new_step", 50, False, "sqlite_normal_commit"),
    ("A", "sqlite", "us_per_replayed_step", 5, False, None),
    ("B", "sqlite", "steps_per_s", 30_000, True, "sqlite_row_in_batch_of_100"),
    ("C", "sqlite", "errors", 0, False, None),
    ("A", "sqlite-full", "us_per_new_step", 200, False, "sqlite_full_commit"),
    ("A", "postgres", "us_per_new_step", 250, False, "postgres_fenced_step_commit"),
    ("B", "postgres", "steps_per_s", 10_000, True, None),
    ("A", "redis", "us_per_new_step", 60, False, "asyncio_socket_round_trip"),
    ("B", "redis", "steps_per_s", 30_000, True, None),
]


def measure_floors(stores: list[str], available: dict[str, str]) -> dict[str, float]:
    """Run floors.py in durable's interpreter; {} if it fails (the table then shows no floors)."""
    command = [sys.executable, str(HERE / "floors.py"), "--json"]
    if "postgres" in stores and not available.get("postgres"):
        command += ["--postgres", POSTGRES_URL]
    if "redis" in stores and not available.get("redis"):
        command += ["--redis", REDIS_URL]
    log("measuring this machine's floors (bare SQLite commits, bare round trips)")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        log(f"  floors not measured: {done.stderr.strip()[-300:]}")
        return {}
    floors: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return floors


def render_targets(results: list[dict[str, Any]], floors: dict[str, float]) -> str:
    """Each target with durable's median, and the bare operation it cannot beat on this machine.

    "scaled" is the target times (this machine's floor / the issue machine's floor), where the
    issue quotes that floor: the same distance from the floor on a slower or faster machine.
    """
    header = ["scenario", "store", "metric", "target", "durable", "met"]
    header += ["floor here", "issue's floor", "scaled"]
    table = [header]
    for scenario, store, metric, target, higher, floor_name in TARGETS:
        row = next(
            (r for r in results if r["engine"] == "durable" and r["scenario"] == scenario
             and r["store"] == store and r.get("status") == "ok"), None,
        )  # fmt: skip
        if row is None:
            continue
        stat = row["summary"].get(metric)
        value = stat["max"] if metric == "errors" else stat["median"] if stat else 0.0
        met = value >= target if higher else value <= target
        floor = floors.get(floor_name) if floor_name else None
        reference = REFERENCE_US.get(floor_name) if floor_name else None
        scaled = "-"
        if floor and reference:
            factor = floor / reference
            scaled_target = target / factor if higher else target * factor
            scaled_met = value >= scaled_target if higher else value <= scaled_target
            scaled = f"{fmt(scaled_target)} ({'met' if scaled_met else 'not met'})"
        table.append([
            scenario, store, metric, f"{'>=' if higher else '<='} {fmt(target)}", fmt(value),
            "yes" if met else "no", f"{fmt(floor)} µs ({floor_name})" if floor else "-",
            f"{fmt(reference)} µs" if reference else "-", scaled,
        ])  # fmt: skip
    if len(table) == 1:
        return ""
    lines = ["", "Targets of issue 4 (durable's median; floors measured by floors.py in this run)"]
    return "\n".join(lines + aligned(table))


def run_all(args: argparse.Namespace) -> int:
    plan = make_plan(args.quick, args.repeats)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    scenarios = [s for s in args.scenarios.upper() if s in ALL_SCENARIOS]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    installed, backends = durable_stores()
    available: dict[str, str] = {}  # store -> reason it is unavailable ("" if available)
    for store in stores:
        if store == "postgres" and not reachable(POSTGRES_URL):
            available[store] = f"no server at {POSTGRES_URL}"
        elif store == "redis" and not reachable(REDIS_URL):
            available[store] = f"no server at {REDIS_URL}"
        else:
            available[store] = ""
    specs: list[EngineSpec] = []
    if "durable" in engines:
        specs.append(EngineSpec("durable", "durable_adapter.py", installed, sys.executable))
    specs += peer_engines(engines, Path(args.venvs))
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    for scenario in scenarios:
        for store in stores:
            for spec in specs:
                row: dict[str, Any] = {"scenario": scenario, "store": store, "engine": spec.name}
                results.append(row)
                if store == "sqlite-full" and spec.name != "durable":
                    row["status"] = "n/a: compare with its 'sqlite' row (its defaults)"
                    continue
                if store not in spec.stores:
                    plugin = "plugin not installed" if spec.name == "durable" else "store not supported"
                    row["status"] = f"n/a: {plugin}"
                    continue
                if spec.python is None:
                    row["status"] = f"skipped: {spec.skipped}"
                    continue
                if available[store]:
                    row["status"] = f"skipped: {available[store]}"
                    continue
                repeats = min(
                    plan.repeats[scenario], spec.repeat_cap.get(scenario, 99) if not args.quick else 99
                )
                runs: list[dict[str, Any]] = []
                for i in range(repeats):
                    log(f"{scenario} {store:<11} {spec.name:<22} repeat {i + 1}/{repeats}")
                    engine_key = "durable" if spec.name == "durable" else spec.name
                    with fresh_store(store, engine_key, backends) as url:
                        result = run_once(
                            spec.python, spec.adapter, scenario, url, plan.params[scenario], plan.timeout
                        )
                    runs.append(result)
                    if "na" in result or "failed" in result:
                        break
                row["runs"] = runs
                if any("na" in r for r in runs):
                    row["status"] = f"n/a: {runs[-1]['na']}"
                elif any("failed" in r for r in runs):
                    row["status"] = f"failed: {runs[-1]['failed'][:120]}"
                    log(f"  {row['status']}\n{runs[-1].get('stderr_tail', '')}")
                else:
                    row["status"] = "ok"
                    row["summary"] = summarise(runs)
                    notes = {r["note"] for r in runs if r.get("note")}
                    if notes:
                        row["note"] = "; ".join(sorted(notes))
    add_ratios(results)
    table = render(results, plan)
    if "durable" in engines:
        floors = measure_floors(stores, available)
        table += "\n" + render_targets(results, floors)
    else:
        floors = {}
    print(table)
    elapsed = time.monotonic() - started
    print(f"\n{len(results)} rows in {elapsed:.0f} s ({'quick' if args.quick else 'full'} run)")
    if args.json:
        document = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count()},
            "quick": args.quick,
            "params": plan.params,
            "repeats": plan.repeats,
            "floors_us": floors,
            "results": results,
            "table": table,
        }  # fmt: skip
        Path(args.json).write_text(json.dumps(document, indent=2))
        log(f"wrote {args.json}")
    return 0


# -- profiling ------------------------------------------------------------------------------


def ensure_tool(module: str, package: str) -> None:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    if probe.returncode == 0:
        return
    log(f"installing {package} from PyPI")
    uv = shutil.which("uv")
    if uv:
        subprocess.run([uv, "pip", "install", "-q", "--python", sys.executable, package], check=True)
    else:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)


def profile(args: argparse.Namespace) -> int:
    scenario = args.profile.upper()
    plan = make_plan(args.quick, 1)
    params = dict(plan.params[scenario])
    if scenario == "A":
        params["steps"] = 20_000  # enough samples for a stable breakdown
    store = args.stores.split(",")[0]
    _, backends = durable_stores()
    out_dir = Path(args.profile_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.profiler == "py-spy":
        ensure_tool("py_spy", "py-spy")
        svg = out_dir / f"profile-{scenario}-{store}.svg"
        prefix = [str(Path(sys.executable).parent / "py-spy"), "record", "--subprocesses", "-r", "1000",
                  "-o", str(svg), "--"]  # fmt: skip
        with fresh_store(store, "durable", backends) as url:
            result = run_once(
                sys.executable, "durable_adapter.py", scenario, url, params, plan.timeout, prefix
            )
        print(json.dumps(result, indent=2))
        print(f"flame graph: {svg}")
        return 0
    ensure_tool("pyinstrument", "pyinstrument")
    text = out_dir / f"profile-{scenario}-{store}.txt"
    html = out_dir / f"profile-{scenario}-{store}.html"
    env = {**os.environ, "BENCH_PROFILE_TEXT": str(text), "BENCH_PROFILE_HTML": str(html)}
    with fresh_store(store, "durable", backends) as url:
        cmd = [sys.executable, str(ADAPTERS / "profile_durable.py"), "--scenario", scenario, "--store", url]
        cmd += ["--params", json.dumps(params)]
        subprocess.run(cmd, check=True, env={**env, "PYTHONPATH": str(ADAPTERS)}, cwd=tempfile.gettempdir())
    print(text.read_text())
    print(f"profile: {text} and {html}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default=",".join(ALL_STORES), help=f"comma-separated, of {ALL_STORES}")
    parser.add_argument("--engines", default="durable,python-durable,dbos")
    parser.add_argument("--scenarios", default=ALL_SCENARIOS)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller C, D, E, F")
    parser.add_argument("--repeats", type=int, default=None, help="override the repeats of every scenario")
    parser.add_argument("--json", default=None, help="write every measurement to this file")
    parser.add_argument("--venvs", default=os.path.join(tempfile.gettempdir(), "durable-bench-venvs"))
    parser.add_argument("--profile", default=None, metavar="SCENARIO", help="profile durable on one scenario")
    parser.add_argument("--profiler", default="pyinstrument", choices=["pyinstrument", "py-spy"])
    parser.add_argument(
        "--profile-out", default=os.path.join(tempfile.gettempdir(), "durable-bench-profiles")
    )
    args = parser.parse_args()
    if args.profile:
        return profile(args)
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
