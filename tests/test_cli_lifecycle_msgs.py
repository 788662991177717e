"""What the command line says when something is wrong: install hints that exist, errors that name
the path, attribute or flag at fault (issue 14, defect 8)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("click", reason="the CLI extra (durable-core[cli]) is not installed")

from click.testing import CliRunner, Result

from durable import Workflow
from durable._plugins import import_store_class, reset_plugin_manager
from durable.cli import cli
from durable.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
META = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def durable(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.removeprefix("error: ").rstrip("\n")


def distributions(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[=<>!~ ;]", r, maxsplit=1)[0] for r in requirements}


@pytest.fixture
def without_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if durable-memory were not installed."""
    monkeypatch.setenv("DURABLE_DISABLE_PLUGINS", "durable-memory")
    reset_plugin_manager()
    yield
    monkeypatch.delenv("DURABLE_DISABLE_PLUGINS")
    reset_plugin_manager()


# -- install hints -----------------------------------------------------------------------


def test_every_install_hint_installs_the_plugin_that_provides_the_store() -> None:
    """`durable stores` only suggests extras that exist, and each one brings the store's plugin."""
    extras = {name: distributions(reqs) for name, reqs in META["optional-dependencies"].items()}
    base = distributions(META["dependencies"])
    for row in json.loads(durable("stores", "--json").stdout):
        hint, plugin = row["install_hint"], row["plugin"]
        extra = re.fullmatch(r"pip install 'python-durable\[([a-z-]+)\]'", hint)
        if extra:
            assert extra[1] in extras, f"{row['name']}: {hint} names an extra python-durable lacks"
            assert plugin in extras[extra[1]], f"{row['name']}: {hint} does not install {plugin}"
        elif hint == "pip install python-durable":
            assert plugin in base, f"{row['name']}: {plugin} is not in python-durable's dependencies"
        else:
            assert hint == f"pip install {plugin}", f"{row['name']}: unexpected hint {hint!r}"


def test_the_memory_store_is_part_of_the_base_package() -> None:
    rows = {row["name"]: row for row in json.loads(durable("stores", "--json").stdout)}
    assert rows["memory"]["install_hint"] == "pip install python-durable"
    assert "[memory]" not in durable("stores").stdout


def test_a_missing_memory_plugin_is_answered_with_the_base_package(
    without_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = one_line_error(durable("runs", "list", "--store", "memory://"))
    assert "no installed durable plugin handles 'memory://...'" in message
    assert "install it with: pip install python-durable." in message
    monkeypatch.setitem(sys.modules, "durable_memory", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"install it with: pip install python-durable$"):
        import_store_class("InMemoryStore")


# -- SQLite paths --------------------------------------------------------------------------


async def test_a_sqlite_path_that_is_a_directory_is_a_configuration_error_naming_it(tmp_path: Path) -> None:
    wf = Workflow("dir", db=str(tmp_path))
    with pytest.raises(ConfigurationError) as caught:
        await wf.get_store()
    assert str(caught.value) == f"SQLite store path {str(tmp_path)!r} is a directory, not a database file"
    await wf.close()


async def test_a_sqlite_path_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "app.db"
    wf = Workflow("nowhere", db=f"sqlite:///{path}")
    with pytest.raises(ConfigurationError) as caught:
        await wf.get_store()
    assert str(caught.value) == (
        f"cannot create SQLite store {str(path)!r}: its directory {str(path.parent)!r} does not exist"
    )
    assert not path.parent.exists()
    await wf.close()


def test_the_cli_reports_a_directory_store_in_one_line(tmp_path: Path) -> None:
    message = one_line_error(durable("runs", "list", "--store", f"sqlite:///{tmp_path}"))
    assert message == (
        f"cannot open store sqlite:///{tmp_path}: SQLite store path {str(tmp_path)!r} is a directory, "
        "not a database file"
    )
    assert "OperationalError" not in message
