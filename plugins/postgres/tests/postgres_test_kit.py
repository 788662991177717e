"""Helpers shared by the Postgres store's tests (on pytest's ``pythonpath``, see pyproject.toml)."""

from __future__ import annotations

import time

from durable.store import RunRecord, RunStatus


def owned(run_id: str) -> RunRecord:
    """A running run owned by ``me`` under lease token 1."""
    now = time.time()
    return RunRecord(
        run_id,
        "wf",
        RunStatus.RUNNING,
        "{}",
        "d",
        now,
        now,
        owner="me",
        lease_token=1,
        lease_expires_at=now + 60,
    )
