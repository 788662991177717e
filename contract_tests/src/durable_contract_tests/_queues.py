"""Queues (``Capability.QUEUES``): limits enforced inside the claim, priorities, delays,
partitions, debounce, and schedule ticks created once. docs/QUEUES.md is the specification."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from durable import Workflow
from durable.store import (
    Capability,
    Enqueued,
    Lease,
    QueuedRun,
    QueueLimits,
    RunRecord,
    RunStatus,
    Store,
)
from durable_contract_tests import _queue_claimers
from durable_contract_tests._base import ContractBase, StoreHarness, requires
from durable_contract_tests._kit import LONG_LEASE, OWNER_A, OWNER_B, get, make_run

Q = "q"
CLAIMERS = 8
CLOCKS = 1.0
"""How far the store's clock may be from this process's when a lease's expiry is compared."""
PROCESS_LIMIT = 60.0
NO_LIMITS = QueueLimits()


def _entry(run: RunRecord, queue: str = Q, **fields: Any) -> QueuedRun:
    fields.setdefault("enqueued_at", run.created_at)
    fields.setdefault("not_before", run.created_at)
    return QueuedRun(run.run_id, queue, **fields)


async def enqueue(
    store: Store,
    run_id: str,
    queue: str = Q,
    *,
    workflow: str = "wf",
    inputs: str = '{"x": 1}',
    created_at: float | None = None,
    **fields: Any,
) -> tuple[RunRecord, Enqueued]:
    run = make_run(run_id, workflow, inputs=inputs, created_at=created_at)
    return await store.enqueue_run(run, _entry(run, queue, **fields))


async def claim(
    store: Store,
    limits: QueueLimits = NO_LIMITS,
    *,
    limit: int = 1,
    queue: str = Q,
    owner: str = OWNER_A,
    now: float | None = None,
    lease_seconds: float = LONG_LEASE,
) -> list[tuple[RunRecord, Lease]]:
    at = time.time() + CLOCKS if now is None else now
    return await store.claim_queued(queue, at, owner, lease_seconds, limits, limit=limit)


def ids(claimed: Iterable[tuple[RunRecord, Lease]]) -> list[str]:
    return [run.run_id for run, _ in claimed]


def most_at_once(lines: Iterable[str]) -> int:
    """The most ``claimed``..``released`` intervals (``_queue_claimers`` lines) open at one time."""
    events = []
    for line in lines:
        kind, _, at = line.split()
        events.append((float(at), 1 if kind == "claimed" else -1))
    events.sort(key=lambda e: (e[0], e[1]))  # at one instant, a release before a claim
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


async def claimer_stores(store: Store, stores: StoreHarness, count: int) -> list[Store]:
    """``count`` store objects over ``store``'s data (the same object where it is one process's)."""
    if Capability.MULTI_PROCESS not in store.capabilities:
        return [store] * count
    return [await stores.reopen(store) for _ in range(count)]


class QueueContract(ContractBase, contract=True):
    """``enqueue_run``, ``claim_queued`` and the rest of ``Capability.QUEUES``."""

    @requires(Capability.QUEUES)
    async def test_an_enqueued_run_is_pending_with_its_entry_and_left_out_of_due_runs(
        self, store: Store
    ) -> None:
        run, outcome = await enqueue(store, "run-1", priority=3, partition_key="tenant-7")
        assert outcome is Enqueued.CREATED and run == await get(store, "run-1")
        assert run.status is RunStatus.PENDING
        entry = await store.get_queued("run-1")
        assert entry == _entry(run, priority=3, partition_key="tenant-7")
        assert entry is not None and entry.started_at is None
        due = await store.due_runs(time.time() + CLOCKS, limit=100)
        assert "run-1" not in [r.run_id for r in due], (
            "due_runs returned a queued run: only queue claims may take it, within its queue's limits"
        )
        assert await store.get_queued("no-such-run") is None

    @requires(Capability.QUEUES)
    async def test_enqueueing_an_existing_run_id_writes_nothing(self, store: Store) -> None:
        first, _ = await enqueue(store, "run-1", inputs='{"x": 1}', priority=1)
        again, outcome = await enqueue(store, "run-1", inputs='{"x": 2}', priority=9)
        assert outcome is Enqueued.EXISTS and again == first == await get(store, "run-1")
        assert (await store.get_queued("run-1")) == _entry(first, priority=1)

    @requires(Capability.QUEUES)
    async def test_a_queue_claim_writes_what_claim_run_writes_and_records_the_first_start(
        self, store: Store
    ) -> None:
        await enqueue(store, "run-1")
        before = time.time()
        ((run, lease),) = await claim(store, lease_seconds=30.0)
        after = time.time()
        assert (lease.run_id, lease.owner, lease.token) == ("run-1", OWNER_A, 1)
        assert run == await get(store, "run-1")
        assert (run.status, run.owner, run.lease_token, run.lease_expires_at) == (
            RunStatus.RUNNING,
            OWNER_A,
            1,
            lease.expires_at,
        )
        entry = await store.get_queued("run-1")
        assert entry is not None and entry.started_at is not None
        assert before - CLOCKS <= entry.started_at <= after + CLOCKS
        assert await claim(store) == [], "a run with a live lease was claimed again"

    @requires(Capability.QUEUES)
    async def test_runs_are_claimed_by_priority_then_first_in_first_out(self, store: Store) -> None:
        base = time.time() - 100
        plan = [("a", 5), ("b", 0), ("c", 5), ("d", -2), ("e", 0), ("f", 0)]
        for n, (run_id, priority) in enumerate(plan):
            await enqueue(store, run_id, created_at=base + n, priority=priority)
        taken = [ids(await claim(store)) for _ in plan]
        assert taken == [["d"], ["b"], ["e"], ["f"], ["a"], ["c"]], (
            "claims take the lowest priority first, then the oldest enqueued_at"
        )
        assert await claim(store) == []

    @requires(Capability.QUEUES)
    async def test_one_claim_takes_up_to_its_limit_in_order(self, store: Store) -> None:
        base = time.time() - 100
        for n in range(5):
            await enqueue(store, f"run-{n}", created_at=base + n)
        assert ids(await claim(store, limit=3)) == ["run-0", "run-1", "run-2"]
        assert ids(await claim(store, limit=3)) == ["run-3", "run-4"]

    @requires(Capability.QUEUES)
    async def test_a_delayed_run_is_not_claimed_before_its_not_before_time(self, store: Store) -> None:
        now = time.time()
        await enqueue(store, "later", created_at=now, not_before=now + 3600)
        assert await claim(store, now=now + 3599) == []
        assert (await get(store, "later")).status is RunStatus.PENDING
        assert ids(await claim(store, now=now + 3600)) == ["later"]

    @requires(Capability.QUEUES)
    async def test_only_the_claimed_queue_and_the_asked_workflows_are_taken(self, store: Store) -> None:
        await enqueue(store, "other-queue", "q2")
        await enqueue(store, "other-workflow", workflow="wf2")
        assert (
            await store.claim_queued(
                Q, time.time() + CLOCKS, OWNER_A, LONG_LEASE, QueueLimits(), workflows={"wf"}
            )
            == []
        )
        assert ids(await claim(store, queue="q2")) == ["other-queue"]
        assert ids(await claim(store)) == ["other-workflow"]

    @requires(Capability.QUEUES)
    async def test_the_concurrency_limit_counts_live_leases_and_a_given_back_slot_frees_at_once(
        self, store: Store
    ) -> None:
        limits = QueueLimits(concurrency=2)
        for n in range(5):
            await enqueue(store, f"run-{n}", created_at=time.time() - 100 + n)
        first = await claim(store, limits, limit=5)
        assert ids(first) == ["run-0", "run-1"]
        assert await claim(store, limits, limit=5) == [], "a claim exceeded concurrency=2"
        (_, done), (_, parked) = first
        await store.update_run(done, RunStatus.COMPLETED, result='"ok"', release=True)
        assert ids(await claim(store, limits, limit=5)) == ["run-2"]
        await store.update_run(parked, RunStatus.WAITING, wake_at=time.time() + 3600, release=True)
        third = await claim(store, limits, limit=5)
        assert ids(third) == ["run-3"], "a parked run (lease released) still held its slot"
        await store.renew_lease(third[0][1], 0)
        assert ids(await claim(store, limits, limit=5)) == ["run-3"], (
            "a lease given back (renew_lease(lease, 0)) must free its slot, and its run is due again"
        )

    @requires(Capability.QUEUES)
    async def test_racing_claimers_never_exceed_the_concurrency_limit(
        self, store: Store, stores: StoreHarness
    ) -> None:
        limits = QueueLimits(concurrency=3)
        for n in range(24):
            await enqueue(store, f"run-{n}")
        lines: list[str] = []
        claimers = await claimer_stores(store, stores, CLAIMERS)
        orders = [
            _queue_claimers.ClaimUntilEmpty(Q, f"o{i}", limits, hold=0.02, idle=0.5) for i in range(CLAIMERS)
        ]
        await asyncio.gather(
            *(
                _queue_claimers.claim_until_empty(s, order, lines.append)
                for s, order in zip(claimers, orders, strict=True)
            )
        )
        assert most_at_once(lines) <= 3, (
            f"{most_at_once(lines)} runs of a concurrency=3 queue held leases at once"
        )
        finished = [await get(store, f"run-{n}") for n in range(24)]
        assert all(run.status is RunStatus.COMPLETED for run in finished), (
            "racing claimers left runs unclaimed"
        )
        assert sum(line.startswith("claimed") for line in lines) == 24, "a run was claimed twice"

    @requires(Capability.QUEUES, Capability.MULTI_PROCESS)
    async def test_claimers_in_other_processes_never_exceed_the_concurrency_limit(
        self, store: Store, stores: StoreHarness
    ) -> None:
        limits = QueueLimits(concurrency=2)
        blueprint = await stores.blueprint(store)
        procs = [
            await asyncio.create_subprocess_exec(
                *_queue_claimers.command(
                    _queue_claimers.ClaimUntilEmpty(Q, f"p{i}", limits, hold=0.03, idle=1.5), blueprint
                ),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for i in range(4)
        ]
        try:
            # The runs are enqueued once every claimer is polling: enqueued before, they were all
            # taken by the first process to start (16 x 0.03 s is less than a Python start-up), and
            # the test passed on a store that enforced no limit at all.
            for p in procs:
                assert p.stdout is not None
                await asyncio.wait_for(p.stdout.readline(), PROCESS_LIMIT)
            for n in range(16):
                await enqueue(store, f"run-{n}")
            outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), PROCESS_LIMIT)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
        for p, (_, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, f"a claimer process failed: {err.decode()[-3000:]}"
        lines = [
            line for out, _ in outputs for line in out.decode().splitlines() if line != _queue_claimers.READY
        ]
        assert most_at_once(lines) <= 2, f"{most_at_once(lines)} runs of a concurrency=2 queue ran at once"
        assert sum(line.startswith("claimed") for line in lines) == 16
        finished = [await get(store, f"run-{n}") for n in range(16)]
        assert all(run.status is RunStatus.COMPLETED for run in finished), "claimer processes left runs"

    @requires(Capability.QUEUES)
    async def test_a_full_partition_does_not_block_another(self, store: Store) -> None:
        limits = QueueLimits(concurrency=10, partition_concurrency=2)
        base = time.time() - 100
        for n in range(50):
            await enqueue(store, f"a-{n:02d}", created_at=base + n, partition_key="tenant-a")
        await enqueue(store, "b-0", created_at=base + 60, partition_key="tenant-b")
        await enqueue(store, "none-0", created_at=base + 61)
        assert ids(await claim(store, limits, limit=10)) == ["a-00", "a-01", "b-0", "none-0"], (
            "partition_concurrency=2: two runs of the flooded partition, then the other partitions' runs"
        )
        assert await claim(store, limits, limit=10) == []

    @requires(Capability.QUEUES)
    async def test_concurrency_stays_the_total_across_partitions(self, store: Store) -> None:
        limits = QueueLimits(concurrency=3, partition_concurrency=2)
        for n in range(4):
            for tenant in "abc":
                await enqueue(store, f"{tenant}-{n}", partition_key=tenant)
        assert len(await claim(store, limits, limit=10)) == 3
        assert await claim(store, limits, limit=10) == []

    @requires(Capability.QUEUES)
    async def test_a_rate_window_limits_first_starts_under_concurrent_claimers(
        self, store: Store, stores: StoreHarness
    ) -> None:
        n, window = 3, 0.6
        limits = QueueLimits(rate_limit=(n, window))
        for i in range(12):
            await enqueue(store, f"run-{i}")
        claimers = await claimer_stores(store, stores, CLAIMERS)
        began = time.monotonic()
        lines: list[str] = []
        orders = [
            _queue_claimers.ClaimUntilEmpty(Q, f"o{i}", limits, hold=0.0, idle=1.6) for i in range(CLAIMERS)
        ]
        await asyncio.gather(
            *(
                _queue_claimers.claim_until_empty(s, order, lines.append)
                for s, order in zip(claimers, orders, strict=True)
            )
        )
        elapsed = time.monotonic() - began
        starts = sorted(
            entry.started_at
            for entry in [await store.get_queued(f"run-{i}") for i in range(12)]
            if entry is not None and entry.started_at is not None
        )
        assert len(starts) == 12, "runs of a rate-limited queue were never started"
        crowded = [s for s in starts if sum(1 for t in starts if s <= t < s + window - 1e-3) > n]
        assert not crowded, (
            f"more than {n} runs started within {window} s of {crowded[0]!r}: rate_limit=({n}, {window}) "
            f"was exceeded (starts: {starts})"
        )
        assert elapsed >= window * (12 / n - 1) - CLOCKS / 2

    @requires(Capability.QUEUES)
    async def test_a_run_resumed_after_its_start_is_not_a_new_start(self, store: Store) -> None:
        limits = QueueLimits(rate_limit=(1, 3600.0))
        await enqueue(store, "run-1", created_at=time.time() - 10)
        await enqueue(store, "run-2")
        ((_, lease),) = await claim(store, limits, limit=5)
        started = (await store.get_queued("run-1")).started_at  # type: ignore[union-attr]
        await store.update_run(lease, RunStatus.WAITING, wake_at=time.time() - 1, release=True)
        assert ids(await claim(store, limits, limit=5)) == ["run-1"], (
            "a woken run that had started was refused by the rate window: only first claims are starts"
        )
        assert (await store.get_queued("run-1")).started_at == started  # type: ignore[union-attr]
        assert await claim(store, limits, limit=5) == [], "run-2 started past a full rate window"

    @requires(Capability.QUEUES)
    async def test_debounced_starts_collapse_into_one_run_with_the_last_inputs(self, store: Store) -> None:
        now = time.time()
        created, outcome = await enqueue(
            store, "doc-9~1", inputs='{"rev": 1}', debounce_key="doc-9", created_at=now, not_before=now + 5
        )
        assert outcome is Enqueued.CREATED
        for rev in (2, 3):
            later = now + rev
            run, outcome = await enqueue(
                store,
                f"doc-9~{rev}",
                inputs=json.dumps({"rev": rev}),
                debounce_key="doc-9",
                created_at=later,
                not_before=later + 5,
                priority=-rev,
            )
            assert outcome is Enqueued.REPLACED and run.run_id == "doc-9~1"
        stored = await get(store, "doc-9~1")
        assert (stored.inputs, stored.inputs_digest, stored.created_at) == (
            '{"rev": 3}',
            'digest:{"rev": 3}',
            created.created_at,
        )
        entry = await store.get_queued("doc-9~1")
        assert entry is not None and (entry.not_before, entry.enqueued_at, entry.priority) == (
            now + 8,
            now + 3,
            -3,
        )
        assert await store.get_run("doc-9~2") is None and await store.get_run("doc-9~3") is None
        assert await claim(store, now=now + 7.9) == [], "a debounced run started before its window ended"
        assert ids(await claim(store, now=now + 8)) == ["doc-9~1"]

    @requires(Capability.QUEUES)
    async def test_concurrent_debounced_starts_create_one_run(
        self, store: Store, stores: StoreHarness
    ) -> None:
        callers = await claimer_stores(store, stores, CLAIMERS)
        results = await asyncio.gather(
            *(
                enqueue(
                    s, f"k~{i}", inputs=json.dumps({"i": i}), debounce_key="k", not_before=time.time() + 60
                )
                for i, s in enumerate(callers)
            )
        )
        outcomes = sorted(outcome.value for _, outcome in results)
        assert outcomes == ["created"] + ["replaced"] * (CLAIMERS - 1), outcomes
        (kept,) = {run.run_id for run, _ in results}
        assert json.loads((await get(store, kept)).inputs)["i"] in range(CLAIMERS)

    @requires(Capability.QUEUES)
    async def test_a_started_or_finished_debounced_run_takes_no_more_starts(self, store: Store) -> None:
        now = time.time()
        await enqueue(store, "k~1", debounce_key="k", created_at=now - 10, not_before=now - 5)
        assert ids(await claim(store)) == ["k~1"]
        run, outcome = await enqueue(store, "k~2", debounce_key="k", inputs='{"x": 2}')
        assert outcome is Enqueued.CREATED and run.run_id == "k~2", "a start joined a run that had started"
        assert (await get(store, "k~1")).inputs == '{"x": 1}'

    @requires(Capability.QUEUES)
    async def test_a_debounce_key_held_by_another_workflow_writes_nothing(self, store: Store) -> None:
        await enqueue(store, "k~1", workflow="wf", debounce_key="k", not_before=time.time() + 60)
        run, outcome = await enqueue(store, "k~2", workflow="other", debounce_key="k", inputs='{"x": 2}')
        assert outcome is Enqueued.EXISTS and run.run_id == "k~1" and run.inputs == '{"x": 1}'
        assert await store.get_run("k~2") is None

    @requires(Capability.QUEUES)
    async def test_an_abandoned_claim_frees_its_slot_when_its_lease_expires(self, store: Store) -> None:
        limits = QueueLimits(concurrency=1)
        await enqueue(store, "run-1", created_at=time.time() - 10)
        await enqueue(store, "run-2")
        ((_, lease),) = await claim(store, limits, lease_seconds=0.5)
        assert await claim(store, limits, owner=OWNER_B) == []
        await asyncio.sleep(0.6)
        retaken = await claim(store, limits, owner=OWNER_B, now=time.time())
        assert [(run.run_id, new.token) for run, new in retaken] == [("run-1", lease.token + 1)], (
            "the slot of an owner whose lease expired was not freed, or its interrupted run not taken first"
        )

    @requires(Capability.QUEUES, Capability.MULTI_PROCESS)
    async def test_a_killed_claimers_slot_is_freed_after_its_lease(
        self, store: Store, stores: StoreHarness
    ) -> None:
        limits, lease_seconds = QueueLimits(concurrency=1), 2.0
        await enqueue(store, "run-1", created_at=time.time() - 10)
        await enqueue(store, "run-2")
        order = _queue_claimers.ClaimAndHang(Q, "doomed", limits, lease_seconds)
        proc = await asyncio.create_subprocess_exec(
            *_queue_claimers.command(order, await stores.blueprint(store)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            while (line := await asyncio.wait_for(proc.stdout.readline(), PROCESS_LIMIT)).strip() == b"ready":
                pass
            if not line.startswith(b"claimed"):
                proc.kill()
                raise AssertionError(
                    f"the claimer did not claim: {(await proc.stderr.read()).decode()[-3000:]}"
                )
            killed = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        assert line.split()[1] == b"run-1"
        assert await claim(store, limits, owner=OWNER_B, now=time.time()) == [], (
            "the dead claimer's slot was free"
        )
        retaken: list[tuple[RunRecord, Lease]] = []
        while not retaken and time.monotonic() - killed < lease_seconds + 2 * CLOCKS + 5:
            await asyncio.sleep(0.1)
            retaken = await claim(store, limits, owner=OWNER_B, now=time.time())
        assert ids(retaken) == ["run-1"], f"the killed claimer's slot was not freed {lease_seconds} s after"

    @requires(Capability.QUEUES)
    async def test_queue_stats_count_what_the_limits_count(self, store: Store) -> None:
        now = time.time()
        for n in range(3):
            await enqueue(store, f"ready-{n}", created_at=now - 10 + n)
        await enqueue(store, "later", not_before=now + 3600)
        await enqueue(store, "elsewhere", "q2")
        await claim(store)
        stats = await store.queue_stats(Q, now + CLOCKS, window=60.0)
        assert (stats.queue, stats.queued, stats.delayed, stats.running, stats.started_in_window) == (
            Q,
            2,
            1,
            1,
            1,
        )
        assert (await store.queue_stats(Q, now + CLOCKS)).started_in_window is None
        assert await store.list_queues() == [Q, "q2"]

    @requires(Capability.QUEUES)
    async def test_deleting_a_queued_run_deletes_its_entry(self, store: Store) -> None:
        await enqueue(store, "run-1")
        assert await store.delete_run("run-1")
        assert await store.get_queued("run-1") is None
        assert await claim(store) == []

    @requires(Capability.QUEUES)
    async def test_a_woken_queued_run_is_claimed_through_its_queue(self, store: Store) -> None:
        await enqueue(store, "run-1")
        ((_, lease),) = await claim(store)
        await store.update_run(lease, RunStatus.WAITING, wake_at=None, release=True)
        assert await claim(store) == []
        await store.send_signal("run-1", "go", "", "null")
        assert "run-1" not in [run.run_id for run in await store.due_runs(time.time() + CLOCKS)]
        assert ids(await claim(store)) == ["run-1"]

    async def test_schedule_ticks_are_created_once_under_concurrent_schedulers(
        self, stores: StoreHarness
    ) -> None:
        await self._ticks_created_once(stores, queued=False)

    @requires(Capability.QUEUES)
    async def test_schedule_ticks_on_a_queue_are_enqueued_once_under_concurrent_schedulers(
        self, stores: StoreHarness
    ) -> None:
        await self._ticks_created_once(stores, queued=True)

    async def _ticks_created_once(self, stores: StoreHarness, *, queued: bool) -> None:
        pytest.importorskip("croniter", reason="schedules need croniter: pip install 'durable-core[cron]'")
        from durable._schedules import Scheduler

        first = await stores.make()
        shared = Capability.MULTI_PROCESS in first.capabilities
        apps, functions = [], []
        for i in range(CLAIMERS):
            app = Workflow(
                "ticks", db=first if i == 0 or not shared else await stores.make(same_data_as=first)
            )
            if queued:
                app.queue(Q, concurrency=1)

            async def report(scheduled_at: datetime) -> None: ...

            declare = app.workflow(
                name="report", schedule="* * * * *", catch_up=3, queue=Q if queued else None
            )
            functions.append(declare(report))
            apps.append(app)
        try:
            if datetime.now(UTC).second >= 55:  # keep the next minute's tick out of this test
                await asyncio.sleep(61 - datetime.now(UTC).second)
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            # A tick started 10 minutes ago: the schedulers catch up on the latest 3 missed since.
            await functions[0].start(scheduled_at=now - timedelta(minutes=10))
            stop = asyncio.Event()
            schedulers = [Scheduler([fn]) for fn in functions]
            running = [asyncio.ensure_future(s.run(stop)) for s in schedulers]
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*running)
            runs = await apps[0].list_runs(workflow="report", limit=100)
            ticks = sorted(run.run_id for run in runs if "@" in run.run_id)
            assert len(runs) == 4 and len(ticks) == 3, (
                f"{CLAIMERS} schedulers catching up 3 ticks made {len(ticks)} tick runs: {ticks}"
            )
            assert ticks == [f"report@{now - timedelta(minutes=m):%Y-%m-%dT%H:%M:%SZ}" for m in (2, 1, 0)]
            # A scheduler starting after another caught up sees the latest tick started: nothing missed.
            assert all(set(s.started) <= set(ticks) for s in schedulers)
            if queued:
                entries = [await apps[0].get_queued(tick) for tick in ticks]
                assert all(entry is not None and entry.queue == Q for entry in entries)
        finally:
            for app in apps:
                await app.close()
