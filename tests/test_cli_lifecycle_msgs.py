"""What the command line says when something is wrong: install hints that exist, errors that name
the path, attribute or flag at fault (issue 14, defect 8)."""

from __future__ import annotations

import asyncio
import json
import logging
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


# -- durable worker MODULE:ATTRIBUTE --------------------------------------------------------

TWO_APPS = """
from durable import Workflow

wf = Workflow("shop", db="memory://")
reports = Workflow("reports", db="memory://")
VERSION = "1.0"

@wf.workflow
async def job() -> None: ...
"""


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A module of two Workflows in the current directory; returns its (unique) name."""
    name = "app_" + re.sub(r"\W", "_", request.node.name)
    (tmp_path / f"{name}.py").write_text(TWO_APPS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("DURABLE_STORE", raising=False)
    monkeypatch.delenv("DURABLE_DEBUG", raising=False)
    durable_log = logging.getLogger("durable")
    monkeypatch.setattr(durable_log, "level", durable_log.level)  # the worker sets it
    return name


def test_a_missing_attribute_is_named_with_the_workflows_the_module_has(app_dir: str) -> None:
    message = one_line_error(durable("worker", f"{app_dir}:nope"))
    assert message == (
        f"module {app_dir!r} has no attribute 'nope'; its durable Workflows: {app_dir}:reports, {app_dir}:wf"
    )
    assert "NoneType" not in message


def test_an_attribute_that_is_not_a_workflow_says_what_it_is(app_dir: str) -> None:
    assert one_line_error(durable("worker", f"{app_dir}:job")) == (
        f"'{app_dir}:job' is a WorkflowFunction, not a durable Workflow; "
        f"its durable Workflows: {app_dir}:reports, {app_dir}:wf"
    )
    assert one_line_error(durable("worker", f"{app_dir}:VERSION")).startswith(
        f"'{app_dir}:VERSION' is a str, not a durable Workflow; "
    )


def test_a_module_alone_must_name_its_workflow_when_it_has_several(app_dir: str) -> None:
    assert one_line_error(durable("worker", app_dir)) == (
        f"name the Workflow in {app_dir!r} as MODULE:ATTRIBUTE; "
        f"its durable Workflows: {app_dir}:reports, {app_dir}:wf"
    )


def test_a_module_that_fails_to_import_is_one_line_naming_it(app_dir: str, tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('DATABASE_URL is not set')\n")
    assert one_line_error(durable("worker", "broken_app:wf")) == (
        "importing 'broken_app' raised RuntimeError: DATABASE_URL is not set "
        "(set DURABLE_DEBUG=1 for the traceback)"
    )


def test_a_store_the_worker_cannot_open_names_where_it_came_from(app_dir: str, tmp_path: Path) -> None:
    message = one_line_error(durable("worker", f"{app_dir}:wf", "--store", f"sqlite:///{tmp_path}"))
    assert message == (
        f"cannot open store sqlite:///{tmp_path} (--store, instead of {app_dir}:wf's db=memory://): "
        f"SQLite store path {str(tmp_path)!r} is a directory, not a database file"
    )


# -- errors name the flag or variable at fault ------------------------------------------------


def test_a_store_from_the_environment_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo.db"
    monkeypatch.setenv("DURABLE_STORE", f"sqlite:///{missing}")
    assert one_line_error(durable("runs", "list")) == (
        f"store file {str(missing)!r} does not exist (check DURABLE_STORE)"
    )
    monkeypatch.setenv("DURABLE_STORE", f"sqlite:///{tmp_path}")
    assert one_line_error(durable("runs", "list")) == (
        f"cannot open store sqlite:///{tmp_path} (from DURABLE_STORE): SQLite store path "
        f"{str(tmp_path)!r} is a directory, not a database file"
    )


def test_unknown_runs_and_empty_names_are_reported_in_the_commands_terms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ops.db"
    monkeypatch.setenv("DURABLE_STORE", f"sqlite:///{path}")

    async def create() -> None:
        async with Workflow("ops", db=f"sqlite:///{path}"):
            pass

    asyncio.run(create())
    message = one_line_error(durable("signal", "order-99", "approve"))
    assert "--create" in message and "create=True" not in message
    empty = durable("signal", "order-99", "", "--create")
    assert empty.exit_code == 2
    assert "Invalid value for NAME: a signal name cannot be empty" in empty.stderr
    assert "str" not in empty.stderr.split("Invalid value", 1)[1]
