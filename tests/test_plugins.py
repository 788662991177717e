"""The plugin system: entry points, validation, conflicts, store URLs and install hints."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from durable import Workflow, hookimpl
from durable._plugins import PluginManager, get_plugin_manager
from durable.errors import PluginError, UnknownStoreError
from durable.hookspecs import StoreBackend
from durable_memory import InMemoryStore


def test_default_plugins_are_found_through_entry_points() -> None:
    names = {p.name for p in get_plugin_manager().plugins()}
    assert {"durable-sqlite", "durable-memory"} <= names
    schemes = get_plugin_manager().backends()
    assert schemes["sqlite"][1] == "durable-sqlite" and schemes["memory"][1] == "durable-memory"


def test_async_hook_implementations_are_rejected_at_registration() -> None:
    class AsyncPlugin:
        @hookimpl
        async def durable_store_from_url(self, url: str, options: dict[str, Any]) -> None:
            return None

    with pytest.raises(PluginError, match="async def"):
        PluginManager().register(AsyncPlugin(), name="bad-async")


def test_two_plugins_claiming_one_scheme_are_reported_by_name() -> None:
    def plugin(backend_name: str) -> object:
        class Plugin:
            @hookimpl
            def durable_store_backends(self) -> list[StoreBackend]:
                return [StoreBackend(backend_name, ("same",), "x", InMemoryStore)]

        return Plugin()

    manager = PluginManager()
    manager.register(plugin("one"), name="plugin-one")
    manager.register(plugin("two"), name="plugin-two")
    with pytest.raises(PluginError, match=r"plugin-one.*plugin-two"):
        manager.backends()


def test_unknown_scheme_names_the_extra_to_install() -> None:
    import durable_memory
    import durable_sqlite

    manager = PluginManager()  # as if only the default install were present
    manager.register(durable_sqlite, name="durable-sqlite")
    manager.register(durable_memory, name="durable-memory")
    with pytest.raises(UnknownStoreError, match=r"pip install 'python-durable\[redis\]'") as info:
        manager.store_from_url("rediss://user:secret@host:6379/0")
    assert "secret" not in str(info.value)


def test_unknown_scheme_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownStoreError, match=r"Installed schemes: .*memory.*sqlite"):
        get_plugin_manager().store_from_url("cassandra://db/ks")


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )


def test_import_durable_needs_only_the_core() -> None:
    result = _python(
        """
        import sys
        sys.modules["redis"] = None  # as if redis were not installed
        sys.modules["asyncpg"] = None
        import durable, durable.backoff, durable.context, durable.store, durable.workflow, durable.redis_store
        assert "aiosqlite" not in sys.modules and "pydantic_ai" not in sys.modules
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_disabled_plugins_are_not_loaded() -> None:
    result = _python(
        """
        from durable._plugins import get_plugin_manager
        print(sorted(p.name for p in get_plugin_manager().plugins()))
        """,
        DURABLE_DISABLE_PLUGINS="durable-memory",
    )
    assert "durable-memory" not in result.stdout and "durable-sqlite" in result.stdout


def test_a_plugin_that_fails_to_import_is_a_warning_not_a_crash(tmp_path: Any) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[durable]\nbroken-plugin = module_that_does_not_exist\n")
    result = _python(
        f"""
        import sys, warnings
        sys.path.insert(0, {str(tmp_path)!r})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from durable._plugins import get_plugin_manager
            names = [p.name for p in get_plugin_manager().plugins()]
        print("broken-plugin" in names, any("broken-plugin" in str(w.message) for w in caught))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True"


def test_workflow_accepts_a_store_a_url_or_a_bare_path(tmp_path: Any) -> None:
    store = InMemoryStore()
    assert Workflow("a", db=store)._store is store
    assert Workflow("b", db="memory://")._store_url == "memory://"
    assert Workflow("c", db=str(tmp_path / "x.db"))._store_url == f"sqlite:///{tmp_path / 'x.db'}"


def test_lazy_store_classes_import_from_the_original_module_paths() -> None:
    from durable import InMemoryStore as A
    from durable import SQLiteStore as B
    from durable.store import InMemoryStore as C
    from durable.store import SQLiteStore as D

    assert A is C and B is D and A.name == "memory" and B.name == "sqlite"


def test_a_plugin_whose_backend_hook_raises_is_skipped_with_a_warning() -> None:
    import durable_memory

    class Broken:
        @hookimpl
        def durable_store_backends(self) -> list[StoreBackend]:
            raise TypeError("built against another durable-core")

    manager = PluginManager()
    manager.register(durable_memory, name="durable-memory")
    manager.register(Broken(), name="broken-plugin")
    with pytest.warns(RuntimeWarning, match="broken-plugin.*another durable-core"):
        backends = manager.backends()
    assert set(backends) == {"memory"}
    assert manager.store_from_url("memory://").name == "memory"
