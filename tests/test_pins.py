"""The plugins' pins say what is tested: lower bounds that `nox -s lowest` runs, and upper bounds on
every library whose private attributes a fast path reads."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_READS = {
    "redis": "redis",
    "hiredis": "redis",
    "aiosqlite": "sqlite",
    "pydantic-ai-slim": "pydantic_ai",
}
"""Library -> the plugin that reads its private attributes or modules."""


def pins(plugin: str) -> dict[str, str]:
    with open(ROOT / "plugins" / plugin / "pyproject.toml", "rb") as f:
        requirements = tomllib.load(f)["project"]["dependencies"]
    found = (re.fullmatch(r"([\w.-]+)(?:\[[^]]*\])?\s*(.*)", r) for r in requirements)
    return {m[1]: m[2] for m in found if m}


def numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.mark.parametrize(("library", "plugin"), sorted(PRIVATE_READS.items()))
def test_a_library_whose_private_attributes_are_read_has_an_upper_bound_it_is_tested_below(
    library: str, plugin: str
) -> None:
    spec = pins(plugin)[library]
    low = re.search(r">=\s*([0-9.]+)", spec)
    high = re.search(r"<\s*([0-9.]+)", spec)
    assert low and high, f"{library} is pinned {spec!r} in plugins/{plugin}: it needs >= and <"
    installed = numbers(version(library))
    assert numbers(low[1]) <= installed < numbers(high[1])
    # The bound is the next minor release after the newest tested one, no further.
    assert numbers(high[1])[:2] == (installed[0], installed[1] + 1), (library, spec, installed)


def test_asyncpg_is_pinned_where_the_pools_reset_argument_exists() -> None:
    assert pins("postgres")["asyncpg"] == ">=0.30"


def test_a_nox_session_runs_the_plugins_tests_at_the_lowest_pins() -> None:
    noxfile = (ROOT / "noxfile.py").read_text()
    assert "def lowest(" in noxfile and "--resolution=lowest-direct" in noxfile
