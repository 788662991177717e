"""Replay checks in an application's own tests.

``await assert_replays(wf, "sqlite:///tests/recorded.db")`` checks the application's current code
against runs recorded in a store file kept with its tests (``durable replay`` in CI does the same
against the real store): it raises ``AssertionError`` naming each incompatible run and step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from durable._records import RunStatus
from durable._replay import ReplayReport
from durable.store import Store
from durable.workflow import Workflow

__all__ = ["assert_replays"]


async def assert_replays(
    wf: Workflow,
    store: str | os.PathLike[str] | Store | None = None,
    runs: Iterable[str] | None = None,
    *,
    workflow: str | None = None,
    statuses: Iterable[RunStatus | str] | None = None,
) -> ReplayReport:
    """``wf.check_replay(...)``, raising ``AssertionError`` unless every selected run replays."""
    report = await wf.check_replay(runs, workflow=workflow, statuses=statuses, store=store)
    if not report.ok:
        raise AssertionError(f"runs recorded in {store or wf!r} do not replay with this code: {report}")
    return report
