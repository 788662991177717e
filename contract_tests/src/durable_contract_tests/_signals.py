"""Signals: recording deliveries once, in order, and waiting for them."""

from __future__ import annotations

import asyncio
import time

from durable.store import Capability, RunStatus, Store
from durable_contract_tests import _processes
from durable_contract_tests._base import ContractBase, StoreHarness, requires
from durable_contract_tests._kit import get, make_run, owned_run

WAIT_LIMIT = 10.0
"""No wait in these tests should take this long; a store that hangs fails instead of blocking the run."""
PROMPT = 1.0
"""How soon a notifying store wakes a waiter after a delivery: a second, which a slow CI machine
keeps, where any polling of the store's waits (``poll_interval``, backoff) has stretched further."""
WAITED = 3.0
"""How long a waiter waits before the delivery in the notification test: a poll that backs off by
doubling from a few milliseconds is, by then, more than ``PROMPT`` away from its next read."""
SENDER_LIMIT = 20.0
"""How long the sending process of the cross-process notification test may take to start."""
SEND_ALLOWANCE = 0.5
"""What the other process may take, once cued, to make its delivery (one store operation)."""


class SignalContract(ContractBase, contract=True):
    """``send_signal``, ``list_signals`` and ``wait_for_signal``."""

    async def test_a_delivery_is_recorded_with_its_fields(self, store: Store) -> None:
        before = time.time()
        assert await store.send_signal("run-1", "approve", "hook-1", '{"ok": true}') is True
        [delivery] = await store.list_signals("run-1")
        assert (delivery.run_id, delivery.name, delivery.delivery_id, delivery.payload) == (
            "run-1",
            "approve",
            "hook-1",
            '{"ok": true}',
        )
        assert before - 1 <= delivery.sent_at <= time.time() + 1

    async def test_a_signal_can_be_sent_before_its_run_exists(self, store: Store) -> None:
        assert await store.send_signal("future-run", "go", "", "1") is True
        assert await store.get_run("future-run") is None
        assert [s.payload for s in await store.list_signals("future-run", "go")] == ["1"]

    async def test_a_signal_sent_before_its_run_is_created_is_kept_when_the_run_is_created(
        self, store: Store
    ) -> None:
        for run_id, create in (
            ("early-pending", lambda: store.create_run(make_run("early-pending"))),
            ("early-owned", lambda: owned_run(store, "early-owned")),
        ):
            assert await store.send_signal(run_id, "approve", "hook-1", '"early"') is True
            await create()
            kept = [(s.name, s.delivery_id, s.payload) for s in await store.list_signals(run_id)]
            assert kept == [("approve", "hook-1", '"early"')], (
                f"the delivery of signal 'approve' (delivery id 'hook-1') sent to run {run_id!r} before "
                f"the run existed was lost when create_run created the run: list_signals returned {kept}"
            )
            assert await store.send_signal(run_id, "approve", "hook-1", '"again"') is False
            assert await store.send_signal(run_id, "approve", "hook-2", '"later"') is True
            [early, later] = await store.list_signals(run_id, "approve")
            assert (early.payload, later.payload) == ('"early"', '"later"') and early.seq < later.seq
            found = await asyncio.wait_for(store.wait_for_signal(run_id, "approve", 0, 0.5), WAIT_LIMIT)
            assert found is not None and found.payload == '"early"'

    async def test_the_same_delivery_id_is_recorded_once(self, store: Store) -> None:
        assert await store.send_signal("run-1", "approve", "hook-1", '"first"') is True
        assert await store.send_signal("run-1", "approve", "hook-1", '"second"') is False
        assert await store.send_signal("run-1", "approve", "", '"empty id"') is True
        assert await store.send_signal("run-1", "approve", "", '"empty id again"') is False
        assert [s.payload for s in await store.list_signals("run-1")] == ['"first"', '"empty id"']

    async def test_a_delivery_id_is_scoped_to_its_run_and_signal_name(self, store: Store) -> None:
        assert await store.send_signal("run-1", "approve", "d", "1") is True
        assert await store.send_signal("run-1", "reject", "d", "2") is True
        assert await store.send_signal("run-2", "approve", "d", "3") is True
        assert [s.payload for s in await store.list_signals("run-1")] == ["1", "2"]
        assert [s.payload for s in await store.list_signals("run-2")] == ["3"]

    async def test_of_concurrent_duplicate_deliveries_exactly_one_is_recorded(self, store: Store) -> None:
        outcomes = await asyncio.gather(
            *(store.send_signal("run-1", "go", "same", f"{i}") for i in range(30))
        )
        assert outcomes.count(True) == 1
        [delivery] = await store.list_signals("run-1", "go")
        assert delivery.payload == str(outcomes.index(True))

    async def test_deliveries_are_listed_in_arrival_order_with_increasing_seq(self, store: Store) -> None:
        sent = [("b", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("a", "5")]
        for i, (name, payload) in enumerate(sent):
            await store.send_signal("run-1", name, f"d{i}", payload)
        everything = await store.list_signals("run-1")
        assert [(s.name, s.payload) for s in everything] == sent
        seqs = [s.seq for s in everything]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert [s.payload for s in await store.list_signals("run-1", "a")] == ["2", "5"]
        assert [s.payload for s in await store.list_signals("run-1", "b")] == ["1", "3"]
        assert await store.list_signals("run-1", "missing") == []

    async def test_concurrent_deliveries_get_distinct_seq_numbers(self, store: Store) -> None:
        await asyncio.gather(*(store.send_signal("run-1", "n", f"d{i}", str(i)) for i in range(40)))
        deliveries = await store.list_signals("run-1", "n")
        assert len(deliveries) == 40
        assert len({s.seq for s in deliveries}) == 40
        assert sorted(int(s.payload) for s in deliveries) == list(range(40))

    async def test_a_delivery_to_a_waiting_run_makes_it_due_at_once(self, store: Store) -> None:
        lease = await owned_run(store, "run-1")
        await store.update_run(lease, RunStatus.WAITING, release=True)
        before = time.time()
        await store.send_signal("run-1", "approve", "", "true")
        run = await get(store, "run-1")
        assert run.wake_at is not None and before - 1 <= run.wake_at <= time.time() + 1
        assert [due.run_id for due in await store.due_runs(time.time() + 1)] == ["run-1"]

    async def test_waiting_for_an_already_delivered_signal_returns_it(self, store: Store) -> None:
        await store.send_signal("run-1", "approve", "", '"early"')
        found = await asyncio.wait_for(store.wait_for_signal("run-1", "approve", 0, None), WAIT_LIMIT)
        assert found is not None and found.payload == '"early"'

    async def test_a_waiter_receives_a_delivery_sent_after_it_started_waiting(self, store: Store) -> None:
        waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "approve", 0, WAIT_LIMIT))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await store.send_signal("run-1", "approve", "", '"late"')
        found = await asyncio.wait_for(waiter, WAIT_LIMIT)
        assert found is not None and found.payload == '"late"'

    async def test_waiting_for_the_nth_delivery_skips_the_earlier_ones(self, store: Store) -> None:
        await store.send_signal("run-1", "tick", "t0", "0")
        await store.send_signal("run-1", "other", "t1", "x")
        waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "tick", 2, WAIT_LIMIT))
        await store.send_signal("run-1", "tick", "t2", "1")
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await store.send_signal("run-1", "tick", "t3", "2")
        found = await asyncio.wait_for(waiter, WAIT_LIMIT)
        assert found is not None and (found.delivery_id, found.payload) == ("t3", "2")
        first = await store.wait_for_signal("run-1", "tick", 0, 0.5)
        assert first is not None and first.payload == "0"

    async def test_waiting_times_out_with_none(self, store: Store) -> None:
        await store.send_signal("run-1", "other-name", "", "1")
        await store.send_signal("other-run", "approve", "", "1")
        started = time.monotonic()
        found = await asyncio.wait_for(store.wait_for_signal("run-1", "approve", 0, 0.3), WAIT_LIMIT)
        elapsed = time.monotonic() - started
        assert found is None
        assert 0.25 <= elapsed < 5.0

    @requires(Capability.NOTIFY)
    async def test_a_notifying_store_wakes_a_long_waiting_waiter_promptly(self, store: Store) -> None:
        # The delivery must wake the waiter, not its next poll: polling is made slow (an hour at
        # most between reads, and WAITED seconds of backoff), so only a notification can wake it
        # within PROMPT.
        store.poll_interval = 3600.0
        waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "approve", 0, WAIT_LIMIT))
        await asyncio.sleep(WAITED)
        assert not waiter.done()
        sent = time.monotonic()
        await store.send_signal("run-1", "approve", "", "1")
        found = await asyncio.wait_for(waiter, WAIT_LIMIT)
        woken = time.monotonic() - sent
        assert found is not None and found.payload == "1"
        assert woken < PROMPT, f"woken {woken:.2f} s after the delivery: by a poll, not a notification?"

    @requires(Capability.NOTIFY, Capability.MULTI_PROCESS)
    async def test_a_delivery_through_another_store_object_wakes_a_long_waiting_waiter_promptly(
        self, store: Store, stores: StoreHarness
    ) -> None:
        # The base class wakes waiters of the store object that recorded the delivery; a store that
        # only polls passes the same-object test above. Another object (another connection) cannot
        # use that shortcut: only the store's notification can wake this waiter within PROMPT.
        other = await stores.reopen(store)
        store.poll_interval = 3600.0
        waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "approve", 0, WAIT_LIMIT))
        await asyncio.sleep(WAITED)
        assert not waiter.done()
        sent = time.monotonic()
        await other.send_signal("run-1", "approve", "", '"pushed"')
        found = await asyncio.wait_for(waiter, WAIT_LIMIT)
        woken = time.monotonic() - sent
        assert found is not None and found.payload == '"pushed"', (
            f"a waiter was not woken within {WAIT_LIMIT:g} s by a delivery through another store object"
        )
        assert woken < PROMPT, (
            f"woken {woken:.2f} s after a delivery through another store object over the same data: by a "
            "poll, not a notification. A store declaring notify must wake the waiters of every store "
            "object and process sharing its data, not only its own"
        )

    @requires(Capability.NOTIFY, Capability.MULTI_PROCESS)
    async def test_a_delivery_from_another_process_wakes_a_long_waiting_waiter_promptly(
        self, store: Store, stores: StoreHarness
    ) -> None:
        store.poll_interval = 3600.0
        order = _processes.SendOnCue("run-1", "approve")
        sender = await asyncio.create_subprocess_exec(
            *_processes.command(order, await stores.blueprint(store)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert sender.stdin is not None and sender.stdout is not None and sender.stderr is not None
        try:
            ready = await asyncio.wait_for(sender.stdout.readline(), SENDER_LIMIT)
            if ready.strip() != _processes.READY.encode():
                sender.kill()
                await sender.wait()
                raise AssertionError(
                    f"the sending process did not start: {(await sender.stderr.read()).decode()[-3000:]}"
                )
            waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "approve", 0, WAIT_LIMIT))
            await asyncio.sleep(WAITED)
            assert not waiter.done()
            sent = time.monotonic()
            sender.stdin.write(b"go\n")
            await sender.stdin.drain()
            found = await asyncio.wait_for(waiter, WAIT_LIMIT)
            woken = time.monotonic() - sent
        finally:
            if sender.returncode is None:
                sender.kill()
            await sender.wait()
        assert found is not None and found.payload == "0", (
            f"a waiter was not woken within {WAIT_LIMIT:g} s by another process's delivery"
        )
        assert woken < PROMPT + SEND_ALLOWANCE, (
            f"woken {woken:.2f} s after another process was told to deliver: by a poll, not a "
            "notification. A store declaring notify must wake waiters in every process sharing its data"
        )

    @requires(Capability.MULTI_PROCESS)
    async def test_a_delivery_through_another_store_object_reaches_a_waiter(
        self, store: Store, stores: StoreHarness
    ) -> None:
        other = await stores.reopen(store)
        waiter = asyncio.ensure_future(store.wait_for_signal("run-1", "approve", 0, WAIT_LIMIT))
        await asyncio.sleep(0.1)
        await other.send_signal("run-1", "approve", "web", '"from elsewhere"')
        found = await asyncio.wait_for(waiter, WAIT_LIMIT)
        assert found is not None and (found.delivery_id, found.payload) == ("web", '"from elsewhere"')
