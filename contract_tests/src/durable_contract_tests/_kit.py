"""Small builders for the records the contract tests write."""

from __future__ import annotations

import json
import time

from durable.store import Lease, RunRecord, RunStatus, StepRecord, StepStatus, Store

OWNER_A = "owner-a"
OWNER_B = "owner-b"
LONG_LEASE = 60.0

HOSTILE_IDS: tuple[str, ...] = (
    "with 'single' and \"double\" quotes",
    "100% _like_ wildcards %_%",
    "a:b:c / slashes \\ back\\slashes",
    "new\nline\r\nand\ttab",
    "'; DROP TABLE runs; --",
    '"); DELETE FROM steps WHERE ("1"="1',
    "{curly} [square] *star* ?q #hash @at",
    "ünïcödé ✓ 日本語 🚀 \u200d\u2028 עברית",
    "   leading and trailing spaces   ",
    "x" * 1000,
)
"""Identifiers a store must store and return exactly (NUL-free: the core rejects NUL in ids)."""


def make_run(
    run_id: str,
    workflow: str = "wf",
    *,
    status: RunStatus = RunStatus.PENDING,
    created_at: float | None = None,
    inputs: str = '{"x": 1}',
    owner: str | None = None,
    lease_seconds: float = LONG_LEASE,
    parent_run_id: str | None = None,
    deadline: float | None = None,
) -> RunRecord:
    """A run as the core would create it; with ``owner`` it carries the creator's lease (token 1)."""
    now = time.time() if created_at is None else created_at
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        status=RunStatus.RUNNING if owner is not None else status,
        inputs=inputs,
        inputs_digest="digest:" + inputs,
        created_at=now,
        updated_at=now,
        owner=owner,
        lease_token=1 if owner is not None else 0,
        lease_expires_at=time.time() + lease_seconds if owner is not None else None,
        deadline=deadline,
        parent_run_id=parent_run_id,
    )


def lease_of(run: RunRecord) -> Lease:
    """The lease a run created with an owner carries."""
    assert run.owner is not None and run.lease_expires_at is not None
    return Lease(run.run_id, run.owner, run.lease_token, run.lease_expires_at)


def make_step(
    run_id: str,
    key: str,
    result: str | None = '"ok"',
    *,
    status: StepStatus = StepStatus.COMPLETED,
    task: str = "task",
    args_digest: str = "args",
    error: str | None = None,
    attempts: int = 1,
    finished_at: float | None = None,
) -> StepRecord:
    finished = time.time() if finished_at is None else finished_at
    return StepRecord(
        run_id=run_id,
        key=key,
        task=task,
        args_digest=args_digest,
        status=status,
        result=result if status is StepStatus.COMPLETED else None,
        error=error if status is StepStatus.COMPLETED else (error or failure_json("boom")),
        attempts=attempts,
        started_at=finished - 0.5,
        finished_at=finished,
    )


def failure_json(message: str) -> str:
    return json.dumps({"type": "builtins.RuntimeError", "message": message, "traceback": "Traceback ..."})


async def owned_run(store: Store, run_id: str, workflow: str = "wf", owner: str = OWNER_A) -> Lease:
    """Create a run owned by ``owner`` (as the core does when it executes a new run)."""
    run, created = await store.create_run(make_run(run_id, workflow, owner=owner))
    assert created, f"run {run_id!r} existed already"
    return lease_of(run)


async def get(store: Store, run_id: str) -> RunRecord:
    run = await store.get_run(run_id)
    assert run is not None, f"run {run_id!r} is missing"
    return run
