"""``RunRecord.version``/``context`` and ``StepRecord.version`` through the Postgres store's own
paths the contract does not reach: batched creations and checkpoints, their settling of
duplicates, and a failed step's replacement. (Listing by version: test_listing_plans.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import pytest
from postgres_test_kit import owned

from durable.batching import WriteBatcher
from durable.store import Lease, RunQuery, StepRecord, StepStatus
from durable_postgres import PostgresStore

pytestmark = pytest.mark.asyncio


async def in_one_flush(batcher: WriteBatcher[Any, Any] | None, *calls: Awaitable[Any]) -> list[Any]:
    assert batcher is not None
    flushes = batcher.flushes
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert batcher.flushes - flushes == 1, "not one flush"
    return outcomes


def step(run_id: str, key: str, version: str | None, status: StepStatus = StepStatus.COMPLETED) -> StepRecord:
    now = time.time()
    error = '"boom"' if status is StepStatus.FAILED else None
    result = None if error else f'"{key}"'
    return StepRecord(run_id, key, "task", "args", status, result, error, 1, now, now, version)


async def test_runs_created_together_keep_their_own_version_and_context(
    store: PostgresStore, unique: str
) -> None:
    runs = [
        replace(owned(f"made-{unique}-{i}"), version=[None, "1.0", "2.0"][i % 3], context=context)
        for i, context in enumerate([None, '{"traceparent": "00-a-b-01"}', "{}", '{"k": "ü"}'])
    ]
    outcomes = await in_one_flush(store._creates, *(store.create_run(run) for run in runs))
    assert [created for _, created in outcomes] == [True] * 4
    for run in runs:
        assert await store.get_run(run.run_id) == run
    listed = await store.list_runs(RunQuery(id_prefix=f"made-{unique}-", version="1.0"))
    assert [run.run_id for run in listed] == [f"made-{unique}-1"]
    # Created again together: each caller gets the stored run, whatever it sent this time.
    again = await in_one_flush(
        store._creates, *(store.create_run(replace(run, version="9", context=None)) for run in runs)
    )
    assert again == [(run, False) for run in runs]


async def test_checkpoints_saved_together_keep_the_version_that_wrote_each(
    store: PostgresStore, unique: str
) -> None:
    run_id = f"steps-{unique}"
    await store.create_run(owned(run_id))
    lease = Lease(run_id, "me", 1, 0.0)
    first = [step(run_id, "a", "1.0"), step(run_id, "b", None), step(run_id, "c", "2.0", StepStatus.FAILED)]
    assert await in_one_flush(store._steps, *(store.save_step(lease, s) for s in first)) == first
    # A completed step's first writer wins, the failed one is replaced (with its new version), and
    # the duplicates of one flush settle to what was stored.
    later = [step(run_id, "a", "9"), step(run_id, "c", "3.0"), step(run_id, "a", "8")]
    saved = await in_one_flush(store._steps, *(store.save_step(lease, s) for s in later))
    assert [s.version for s in saved] == ["1.0", "3.0", "1.0"]
    stored = {s.key: s.version for s in await store.load_steps(run_id)}
    assert stored == {"a": "1.0", "b": None, "c": "3.0"}
