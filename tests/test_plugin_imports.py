"""Loading plugins imports no store driver: a driver is imported when its store is used."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from durable._plugins import get_plugin_manager
from durable.hookspecs import StoreBackend
from durable_memory import InMemoryStore

DRIVERS = ("redis", "hiredis", "asyncpg", "aiosqlite", "pydantic_ai")
FIRST_PARTY = {
    "sqlite": "SQLiteStore",
    "memory": "InMemoryStore",
    "redis": "RedisStore",
    "postgres": "PostgresStore",
}


PRELUDE = f"""
import sys

def imported():
    return sorted({{name.split(".")[0] for name in sys.modules}} & set({DRIVERS!r}))
"""


def run_python(code: str, cwd: Path) -> list[str]:
    """Runs ``code`` in a fresh interpreter, with ``imported()`` (the drivers imported so far)
    defined; the lines it printed."""
    source = PRELUDE + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize(("db", "expected"), [("memory://", []), ("sqlite:///runs.db", ["aiosqlite"])])
def test_a_run_imports_only_the_driver_of_the_store_it_uses(
    tmp_path: Path, db: str, expected: list[str]
) -> None:
    lines = run_python(
        f"""
        import asyncio
        from durable import Workflow

        wf = Workflow("x", db={db!r})

        @wf.task
        async def add_one(n: int) -> int:
            return n + 1

        @wf.workflow(id="r-{{n}}")
        async def flow(n: int) -> int:
            return await add_one(n)

        async def main():
            value = await flow(n=1)
            await wf.close()
            return value

        print(asyncio.run(main()))
        print(imported())
        # Every plugin was loaded (so this checks something): their modules are imported.
        print(all(m in sys.modules for m in ("durable_redis", "durable_postgres", "durable_sqlite")))
        """,
        tmp_path,
    )
    assert lines == ["2", repr(expected), "True"]


def test_listing_plugins_and_backends_imports_no_driver(tmp_path: Path) -> None:
    lines = run_python(
        """
        from durable._plugins import get_plugin_manager

        manager = get_plugin_manager()
        print(sorted({backend.name for backend, _ in manager.backends().values()}))
        print(sorted(p.name for p in manager.plugins()))
        print(imported())
        """,
        tmp_path,
    )
    backends, plugins, imported = (eval(line) for line in lines)
    assert set(FIRST_PARTY) <= set(backends)
    assert {
        "durable-sqlite",
        "durable-memory",
        "durable-redis",
        "durable-postgres",
        "durable-pydantic-ai",
    } <= set(plugins)
    assert imported == []


def test_the_cli_still_lists_every_backend_and_plugin() -> None:
    def cli(*args: str) -> list[dict[str, object]]:
        command = [sys.executable, "-c", "from durable.cli import main; main()", *args, "--json"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        listed: list[dict[str, object]] = json.loads(result.stdout)
        return listed

    stores = {row["name"]: row for row in cli("stores")}
    assert set(FIRST_PARTY) <= set(stores)
    assert stores["redis"]["schemes"] == ["redis", "rediss"]
    assert stores["postgres"]["capabilities"] == [
        "multi-host",
        "multi-process",
        "notify",
        "persistent",
        "queues",
        "streams",
    ]
    plugins = {row["name"] for row in cli("plugins")}
    assert {
        "durable-sqlite",
        "durable-memory",
        "durable-redis",
        "durable-postgres",
        "durable-pydantic-ai",
    } <= plugins


@pytest.mark.parametrize("name", sorted(FIRST_PARTY))
def test_a_backend_declares_what_its_store_class_has(name: str) -> None:
    # The capabilities are written in the plugin module (so listing them imports no driver):
    # they must stay those of the class.
    import durable

    backend = get_plugin_manager().backend_named(name)
    store_class = backend.load_store_class()
    assert store_class is getattr(durable, FIRST_PARTY[name])
    assert backend.capabilities == store_class.capabilities
    assert store_class.name == name


def test_a_backend_names_its_store_class_or_gives_it() -> None:
    given = StoreBackend("a", ("a",), "given", InMemoryStore)
    named = StoreBackend("b", ("b",), "named", "durable_memory:InMemoryStore")
    assert given.load_store_class() is InMemoryStore
    assert named.load_store_class() is InMemoryStore


def test_the_store_classes_import_from_the_plugin_packages() -> None:
    from durable_postgres import PostgresStore
    from durable_redis import RedisStore
    from durable_sqlite import SQLiteStore

    assert (SQLiteStore.name, RedisStore.name, PostgresStore.name) == ("sqlite", "redis", "postgres")
    with pytest.raises(AttributeError, match="durable_redis' has no attribute 'Nope'"):
        import durable_redis

        durable_redis.Nope  # noqa: B018
