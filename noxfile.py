"""Test matrix: `nox -l` lists sessions. Stores needing a server read DURABLE_TEST_<NAME>_URL."""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"


def _expose_pyenv_pythons() -> None:
    """Put every pyenv-installed interpreter on PATH, so python3.12 and python3.13 are found
    without activating them (uv would otherwise try to download them)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    bins = [str(p / "bin") for p in sorted(root.glob("3.*")) if (p / "bin").is_dir()]
    if bins:
        os.environ["PATH"] = os.pathsep.join([*bins, os.environ.get("PATH", "")])
    os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


_expose_pyenv_pythons()
nox.options.sessions = ["lint", "tests-3.11", "contract_all"]

PYTHONS = ["3.11", "3.12", "3.13"]
STORES = ["sqlite", "memory", "postgres", "redis"]
PLUGINS = {
    "sqlite": "plugins/sqlite",
    "memory": "plugins/memory",
    "postgres": "plugins/postgres",
    "redis": "plugins/redis",
    "pydantic-ai": "plugins/pydantic_ai",
    "opentelemetry": "plugins/opentelemetry",
}
TEST_TOOLS = [
    "pytest>=8",
    "pytest-asyncio>=1.0",
    "pydantic>=2",
    "fakeredis>=2.26",
    "pydantic-ai-slim[mcp]>=2.68,<2.69",
    "playwright>=1.40",
    "opentelemetry-sdk>=1.20",
]


def editable(*paths: str) -> list[str]:
    args: list[str] = []
    for path in paths:
        args += ["-e", path]
    return args


def install_everything(session: nox.Session) -> None:
    session.install(
        *editable("core[cli]", *PLUGINS.values(), "contract_tests", "examples/third_party_store"), *TEST_TOOLS
    )


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite (core, every store's contract, plugins, examples)."""
    install_everything(session)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS)
@nox.parametrize("store", STORES, ids=STORES)
def contract(session: nox.Session, store: str) -> None:
    """The store contract suite over one store, installed alone with the core."""
    session.install(*editable("core", PLUGINS[store], "contract_tests"), *TEST_TOOLS)
    session.run("pytest", "--pyargs", "durable_contract_tests", "--durable-store", store, *session.posargs)


@nox.session(python="3.11")
def contract_all(session: nox.Session) -> None:
    """The contract suite over every store, with every plugin installed together."""
    install_everything(session)
    session.run("pytest", "--pyargs", "durable_contract_tests", *session.posargs)


STORE_PLUGIN_TESTS = ["plugins", "tests/test_plugin_imports.py"]


def lower_bounds() -> dict[str, str]:
    """Each plugin dependency's lower bound (``redis>=5.0.1,<8.2`` -> ``{"redis": "5.0.1"}``)."""
    bounds = {}
    for path in PLUGINS.values():
        with open(Path(path) / "pyproject.toml", "rb") as f:
            requirements = tomllib.load(f)["project"]["dependencies"]
        for requirement in requirements:
            found = re.fullmatch(r"([\w.-]+)(?:\[[^]]*\])?\s*>=\s*([0-9][0-9.]*)(?:\s*,.*)?", requirement)
            if found and not found[1].startswith("durable-"):
                bounds[found[1]] = found[2]
    return bounds


@nox.session(python="3.11", venv_backend="uv")
def lowest(session: nox.Session) -> None:
    """The store plugins' tests with every plugin dependency at the lowest version its pin allows.

    uv's lowest-direct resolution installs the plugins' own dependencies (the drivers, pydantic-ai)
    at their lower bounds and everything else at its newest; the test tools come after, at their
    newest, and the session checks that they moved no driver off its lower bound."""
    session.install("--resolution=lowest-direct", *editable("core[cli]", *PLUGINS.values(), "contract_tests"))
    tools = [re.split(r"[\[<>=]", tool)[0] for tool in TEST_TOOLS if not tool.startswith("pydantic-ai")]
    session.install(*TEST_TOOLS, *(f"--upgrade-package={name}" for name in tools))
    expected = lower_bounds()
    session.log("lower bounds: " + ", ".join(f"{name} {low}" for name, low in sorted(expected.items())))
    session.run("python", "-c", _CHECK_VERSIONS, json.dumps(expected))
    session.run("pytest", *(session.posargs or STORE_PLUGIN_TESTS))


_CHECK_VERSIONS = """
import json, sys
from importlib.metadata import version

def padded(text):
    parts = [int(p) for p in text.split(".")[:3]]
    return parts + [0] * (3 - len(parts))

wrong = {n: version(n) for n, v in json.loads(sys.argv[1]).items() if padded(version(n)) != padded(v)}
if wrong:
    sys.exit(f"not at the lower bounds of the pins: {wrong}")
print("every plugin dependency is at its lower bound")
"""


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict."""
    install_everything(session)
    session.install("ruff>=0.8", "mypy>=1.13", "asyncpg-stubs>=0.29", "playwright>=1.40")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python="3.11")
def packaging(session: nox.Session) -> None:
    """Build every wheel, install the meta package with all extras in a clean venv, list stores."""
    session.install("build")
    dist = Path(tempfile.mkdtemp(prefix="durable-dist-"))
    for project in [".", "core", *PLUGINS.values()]:
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), project, silent=True)
    wheels = sorted(str(p) for p in dist.glob("*.whl"))
    session.log("built: " + ", ".join(Path(w).name for w in wheels))
    venv = dist / "venv"
    session.run("uv", "venv", "-q", str(venv), external=True)
    python = str(venv / "bin" / "python")
    session.run(
        "uv", "pip", "install", "-q", "--python", python, "--find-links", str(dist), "python-durable[all]",
        external=True,
    )  # fmt: skip
    session.run(str(venv / "bin" / "durable"), "stores", external=True)
    session.run(str(venv / "bin" / "durable"), "plugins", external=True)
    session.run(str(venv / "bin" / "python"), "-c", "import durable, durable.pydantic_ai", external=True)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks for every installed store, side by side with the peers (see benchmarks/README.md)."""
    install_everything(session)
    session.run("python", "benchmarks/run.py", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


@nox.session(python=False)
def services(session: nox.Session) -> None:
    """Show which test servers the environment points at."""
    for name in ("POSTGRES", "REDIS"):
        session.log(f"DURABLE_TEST_{name}_URL={os.environ.get(f'DURABLE_TEST_{name}_URL', '(unset)')}")
