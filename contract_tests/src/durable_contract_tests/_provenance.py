"""Provenance: the code version and trace context a run was created with, and the version that
wrote each checkpoint (``RunRecord.version``, ``RunRecord.context``, ``StepRecord.version``).

They are written once, at creation (or with the checkpoint), and no later write may change them:
a worker of another release resumes the run, and the viewer, ``durable runs list --version`` and
a tracer read what the creator stored.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

from durable.store import Capability, QueuedRun, RunQuery, RunStatus, Store
from durable_contract_tests._base import ContractBase, requires
from durable_contract_tests._kit import OWNER_A, OWNER_B, get, lease_of, make_run, make_step

VERSION = "2026.12.1"
CONTEXT = json.dumps({
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=" + "x" * 400,
    "baggage": "tenant=ünïcode,plan=pro",
})  # fmt: skip


class ProvenanceContract(ContractBase, contract=True):
    """``version`` and ``context`` of runs, ``version`` of steps: stored, returned, never changed."""

    async def test_a_created_run_keeps_its_version_and_context_in_every_read(self, store: Store) -> None:
        run = replace(make_run("run-v"), version=VERSION, context=CONTEXT)
        stored, created = await store.create_run(run)
        assert created and (stored.version, stored.context) == (VERSION, CONTEXT)
        assert await store.get_run("run-v") == run
        assert await store.list_runs(RunQuery()) == [run]
        due = await store.due_runs(time.time() + 1)
        assert [(r.run_id, r.version, r.context) for r in due] == [("run-v", VERSION, CONTEXT)]

    async def test_a_run_without_them_reads_none(self, store: Store) -> None:
        await store.create_run(make_run("plain"))
        run = await get(store, "plain")
        assert (run.version, run.context) == (None, None)

    async def test_no_later_write_changes_them(self, store: Store) -> None:
        run = replace(make_run("run-v"), version=VERSION, context=CONTEXT)
        await store.create_run(run)
        lease = await store.claim_run("run-v", OWNER_A, 30.0)
        assert lease is not None
        await store.update_run(lease, RunStatus.WAITING, wake_at=time.time(), release=True)
        lease = await store.claim_run("run-v", OWNER_B, 30.0)
        assert lease is not None
        await store.renew_lease(lease, 30.0)
        await store.update_run(lease, RunStatus.FAILED, error=None, release=True)
        await store.reset_run("run-v")
        await store.request_cancel("run-v")
        after = await get(store, "run-v")
        assert (after.version, after.context) == (VERSION, CONTEXT)
        # A second creation of the id (another release starting it again) changes nothing either.
        again, created = await store.create_run(replace(run, version="9.9", context=None))
        assert not created and (again.version, again.context) == (VERSION, CONTEXT)

    async def test_a_checkpoint_keeps_the_version_that_wrote_it(self, store: Store) -> None:
        run, _ = await store.create_run(make_run("run-s", owner=OWNER_A))
        lease = lease_of(run)
        older = replace(make_step("run-s", "a", finished_at=time.time() - 2), version="1.0")
        newer = replace(make_step("run-s", "b", finished_at=time.time() - 1), version="2.0")
        unversioned = make_step("run-s", "c", finished_at=time.time())
        assert (await store.save_step(lease, older)).version == "1.0"
        await store.save_steps(lease, [newer, unversioned])
        steps = await store.load_steps("run-s")
        assert [(s.key, s.version) for s in steps] == [("a", "1.0"), ("b", "2.0"), ("c", None)]
        assert steps == [older, newer, unversioned]

    async def test_runs_are_listed_by_the_version_that_created_them(self, store: Store) -> None:
        now = time.time()
        for n, version in enumerate(["1.0", "2.0", "1.0", None, "1.0", "10"]):
            await store.create_run(
                replace(make_run(f"run-{n}", created_at=now - 10 + n), version=version)
            )  # fmt: skip

        async def ids(**query: object) -> list[str]:
            return [r.run_id for r in await store.list_runs(RunQuery(**query))]  # type: ignore[arg-type]

        listed = await store.list_runs(RunQuery(version="1.0"))
        assert [r.run_id for r in listed] == ["run-4", "run-2", "run-0"]
        assert await ids(version="1.0", limit=2) == ["run-4", "run-2"]
        assert await ids(version="1.0", offset=1) == ["run-2", "run-0"]
        assert await ids(version="1.0", after=(listed[0].created_at, "run-4")) == ["run-2", "run-0"]
        assert await ids(version="1") == []
        assert len(await store.list_runs(RunQuery())) == 6
        pending = frozenset({RunStatus.PENDING})
        assert await ids(version="1.0", statuses=pending, id_prefix="run-2") == ["run-2"]

    @requires(Capability.QUEUES)
    async def test_an_enqueued_run_keeps_its_version_and_context(self, store: Store) -> None:
        run = replace(make_run("queued-v"), version=VERSION, context=CONTEXT)
        stored, _ = await store.enqueue_run(run, QueuedRun("queued-v", "q", enqueued_at=time.time()))
        assert (stored.version, stored.context) == (VERSION, CONTEXT)
        assert await store.get_run("queued-v") == run
        assert [r.run_id for r in await store.list_runs(RunQuery(version=VERSION))] == ["queued-v"]
