"""The example store's run records: activity, giving a lease back, due runs oldest first, and
files written before the activity field existed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from durable._lifecycle import is_due
from durable.store import Lease, RunQuery, RunRecord, RunStatus
from durable_example_store import JsonFileStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JsonFileStore]:
    opened = JsonFileStore(tmp_path / "store.json")
    await opened.open()
    yield opened
    await opened.close()


def run(
    run_id: str, status: RunStatus = RunStatus.PENDING, created_at: float = 1.0, **fields: Any
) -> RunRecord:
    return RunRecord(run_id, "wf", status, "{}", "d", created_at, created_at, **fields)


async def owned(store: JsonFileStore, run_id: str, **fields: Any) -> Lease:
    now = time.time()
    record = run(
        run_id, RunStatus.RUNNING, now, owner="me", lease_token=1, lease_expires_at=now + 60, **fields
    )
    await store.create_run(record)
    return Lease(run_id, "me", 1, now + 60)


async def activity(store: JsonFileStore, run_id: str) -> str | None:
    found = await store.get_run(run_id)
    assert found is not None
    return found.activity


async def test_activity_is_kept_written_as_given_renewed_when_given_and_cleared_by_claims(
    store: JsonFileStore,
) -> None:
    lease = await owned(store, "r", activity="created")
    assert await activity(store, "r") == "created"
    assert [r.activity for r in await store.list_runs(RunQuery())] == ["created"]
    assert (await store.renew_lease(lease, 60)).activity == "created"
    assert (await store.renew_lease(lease, 60, activity="renewed")).activity == "renewed"
    await store.update_run(lease, RunStatus.RUNNING)
    assert await activity(store, "r") is None
    await store.update_run(lease, RunStatus.RUNNING, activity="given back", release=True)
    assert [r.activity for r in await store.due_runs(time.time())] == ["given back"]
    claimed = await store.claim_run("r", "other", 60)
    assert claimed is not None and await activity(store, "r") is None
    await store.update_run(claimed, RunStatus.FAILED, activity="failed here", release=True)
    await store.reset_run("r")
    assert await activity(store, "r") is None


async def test_a_lease_renewed_for_zero_seconds_is_claimable_at_once_and_keeps_its_owner(
    store: JsonFileStore,
) -> None:
    lease = await owned(store, "r")
    assert await store.claim_run("r", "other", 60) is None
    given_back = await store.renew_lease(lease, 0)
    assert given_back.owner == "me" and given_back.status is RunStatus.RUNNING
    claimed = await store.claim_run("r", "other", 60)
    assert claimed is not None and claimed.token == 2


async def test_due_runs_are_exactly_what_is_due_accepts_oldest_first(store: JsonFileStore) -> None:
    now = time.time()
    records = [
        run("pending", created_at=30.0),
        run("live", RunStatus.RUNNING, 29.0, owner="o", lease_expires_at=now + 60),
        run("expired", RunStatus.RUNNING, 28.0, owner="o", lease_expires_at=now - 1),
        run("asleep", RunStatus.WAITING, 27.0, wake_at=now + 60),
        run("awake", RunStatus.WAITING, 26.0, wake_at=now - 1),
        run("waiting-dead-owner", RunStatus.WAITING, 25.0, owner="o", lease_expires_at=now - 1),
        run("completed", RunStatus.COMPLETED, 24.0),
        run("failed", RunStatus.FAILED, 23.0),
        run("tie-b", created_at=1.0),
        run("tie-a", created_at=1.0),
    ]
    for record in records:
        await store.create_run(record)
    expected = sorted((r for r in records if is_due(r, now)), key=lambda r: (r.created_at, r.run_id))
    assert [r.run_id for r in expected] == [
        "tie-a",
        "tie-b",
        "waiting-dead-owner",
        "awake",
        "expired",
        "pending",
    ]
    assert await store.due_runs(now) == expected
    assert await store.due_runs(now, limit=2) == expected[:2]


async def test_a_file_written_before_runs_had_activity_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    old_run = {
        "run_id": "old", "workflow": "wf", "status": "pending", "inputs": "{}", "inputs_digest": "d",
        "created_at": 1.0, "updated_at": 1.0, "result": None, "error": None, "owner": None,
        "lease_token": 0, "lease_expires_at": None, "wake_at": None, "deadline": None,
        "parent_run_id": None, "cancel_requested": False,
    }  # fmt: skip
    doc = {
        "format": "durable-example-store/1",
        "seq": 0,
        "runs": {"old": old_run},
        "steps": {},
        "signals": {},
    }
    path.write_text(json.dumps(doc))
    store = JsonFileStore(path)
    await store.open()
    assert [r.run_id for r in await store.due_runs(time.time())] == ["old"]
    lease = await store.claim_run("old", "me", 60)
    assert lease is not None
    await store.update_run(lease, RunStatus.WAITING, activity='{"signal": "go", "timeout": null}')
    assert await activity(store, "old") == '{"signal": "go", "timeout": null}'


async def test_due_runs_of_some_workflows_are_only_theirs_oldest_first(store: JsonFileStore) -> None:
    for i, workflow in enumerate(["a", "b", "c", "a", "b", "a"]):
        await store.create_run(
            RunRecord(f"{workflow}-{i}", workflow, RunStatus.PENDING, "{}", "d", 10.0 - i, 1.0)
        )
    now = time.time()
    assert [r.run_id for r in await store.due_runs(now, workflows={"a"})] == ["a-5", "a-3", "a-0"]
    assert [r.run_id for r in await store.due_runs(now, workflows=["b", "c"])] == ["b-4", "c-2", "b-1"]
    assert [r.run_id for r in await store.due_runs(now, 2, workflows=("a", "c"))] == ["a-5", "a-3"]
    assert await store.due_runs(now, workflows=()) == []
    assert len(await store.due_runs(now)) == 6
