"""Tests that need a store's server nobody provided: one line per backend, not one per test.

A test or fixture that needs a server calls ``server_url(backend, example)``: the URL in
``DURABLE_TEST_<BACKEND>_URL``, or else a skip that raises ``ServerMissing`` (a failure in
strict mode, ``DURABLE_TEST_STRICT=1``). The pytest plugin folds those skips: ``-ra`` lists
one line per backend, and the terminal summary says once per backend how many tests were
skipped and which variable to set.

Imports only pytest and the standard library (the plugin imports it at load).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from _pytest.outcomes import Skipped as SkipException
else:
    SkipException = pytest.skip.Exception

STRICT_ENV = "DURABLE_TEST_STRICT"


def env_var(backend: str) -> str:
    """``DURABLE_TEST_<BACKEND>_URL``: the variable that names a backend's test server."""
    return "DURABLE_TEST_" + "".join(c if c.isalnum() else "_" for c in backend.upper()) + "_URL"


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class ServerMissing(SkipException):
    """A test skipped because no server was found for ``backend``."""

    def __init__(self, backend: str, variable: str, example: str = "", detail: str = "") -> None:
        self.backend = backend
        self.variable = variable
        self.example = example
        """A value for ``variable``, e.g. ``redis://127.0.0.1:6379/0``."""
        self.detail = detail
        """What else was tried and how it failed (one line), or ``""``."""
        super().__init__(self.short_reason)

    @property
    def short_reason(self) -> str:
        """The same for every test of one backend, so the skips fold into one line."""
        return f"no server: set {self.variable}"

    def full_reason(self) -> str:
        hint = f"{self.variable}={self.example}" if self.example else self.variable
        text = f"no {self.backend} server: set {hint}"
        return f"{text} ({self.detail})" if self.detail else text


def missing_server(
    backend: str, variable: str, example: str = "", detail: str = "", *, strict: bool | None = None
) -> NoReturn:
    """Skip the current test for want of a server (fail it in strict mode)."""
    missing = ServerMissing(backend, variable, example, " ".join(detail.split()))
    if strict_from_env() if strict is None else strict:
        pytest.fail(
            f"{missing.full_reason()}; strict mode (--durable-strict or {STRICT_ENV}=1) requires a server",
            pytrace=False,
        )
    raise missing


def server_url(backend: str, example: str) -> str:
    """The base URL of ``backend``'s test server from ``DURABLE_TEST_<BACKEND>_URL``, or a skip."""
    variable = env_var(backend)
    url = os.environ.get(variable, "").strip()
    if not url:
        missing_server(backend, variable, example)
    return url


@dataclass
class BackendSkips:
    """The tests one backend's missing server skipped in this session."""

    variable: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, missing: ServerMissing) -> None:
        self.count += 1
        if missing.example and missing.example not in self.examples:
            self.examples.append(missing.example)
        if missing.detail and missing.detail not in self.details:
            self.details.append(missing.detail)

    def hint(self) -> str:
        # A complete URL reads better than a placeholder such as postgresql://...
        complete = [e for e in self.examples if not e.endswith("...")]
        example = (complete or self.examples or [""])[0]
        return f"{self.variable}={example}" if example else self.variable


def fold(report: pytest.TestReport, missing: ServerMissing, seen: dict[str, BackendSkips]) -> None:
    """Count the skip under its backend and give it the backend's one summary line."""
    seen.setdefault(missing.backend, BackendSkips(missing.variable)).add(missing)
    # (path, line, reason): -ra folds identical triples; the backend's name stands for the path,
    # and no line number (as pytest's own folded skip markers have none).
    report.longrepr = (missing.backend, None, missing.short_reason)  # type: ignore[assignment]


def summarize(terminal: pytest.TerminalReporter, seen: dict[str, BackendSkips]) -> None:
    if not seen:
        return
    terminal.section("durable: test servers not found", sep="=", yellow=True)
    for backend, skipped in sorted(seen.items()):
        tests = f"{skipped.count} test{'s' if skipped.count != 1 else ''}"
        terminal.write_line(f"{backend}: {tests} skipped; set {skipped.hint()} to run them")
        for detail in skipped.details:
            terminal.write_line(f"  {detail}")
    terminal.write_line(f"{STRICT_ENV}=1 turns these skips into failures (as CI runs).")
