"""Atomic writes across processes: a reader never sees half of another process's write, and a
process killed while writing leaves every record whole, as it was before that write or after it.

A store that rewrites a file in place, or updates a record's fields one by one, passes every
single-process test; these two catch it. Both run a writer in another process
(``_processes.WriteUntilStopped``): each round ``n`` writes the run's result and wake time
(``update_run``), a checkpoint ``s<n>`` and a delivery ``d<n>``, each value saying its round.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

from durable.store import Capability, Lease, RunStatus, Store
from durable_contract_tests._base import ContractBase, StoreHarness, requires
from durable_contract_tests._kit import owned_run
from durable_contract_tests._processes import (
    READY,
    WriteUntilStopped,
    command,
    deliveries_of,
    payload,
    round_of,
    wake_of,
)

RESULT_SIZE = 256 * 1024
"""Bytes of each round's run result: big enough that writing it takes a while."""
STEP_SIZE = 16 * 1024
READ_FOR = 2.0
"""Seconds the reader reads while the other process writes."""
KILLS = 5
"""Times the writing process is killed (at random moments) and the store reopened."""
CHILD_LIMIT = 20.0
"""How long a writing process may take to start or to acknowledge a write."""


class WriterFailed(AssertionError):
    pass


@dataclass
class Acks:
    """The writes a writing process reported done, by kind: the last round of each."""

    last: dict[str, int] = field(default_factory=lambda: {"run": 0, "step": 0, "signal": 0})
    times: list[float] = field(default_factory=list)

    def add(self, lines: Iterable[str]) -> int:
        count = 0
        for line in lines:
            kind, _, n = line.strip().partition(" ")
            if kind in self.last and n.isdigit():
                self.last[kind] = max(self.last[kind], int(n))
                self.times.append(time.monotonic())
                count += 1
        return count


async def _start(order: WriteUntilStopped, blueprint: bytes) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        *command(order, blueprint), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    line = await _line(process)
    if line != READY:
        await _fail(process, f"the writing process said {line!r} instead of {READY!r}")
    return process


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    try:
        raw = await asyncio.wait_for(process.stdout.readline(), CHILD_LIMIT)
    except TimeoutError:
        await _fail(process, f"the writing process printed nothing for {CHILD_LIMIT:g} s")
    if not raw:
        await _fail(process, "the writing process ended")
    return raw.decode().strip()


async def _fail(process: asyncio.subprocess.Process, what: str) -> NoReturn:
    if process.returncode is None:
        process.kill()
    await process.wait()
    assert process.stderr is not None
    err = (await process.stderr.read()).decode(errors="replace")
    raise WriterFailed(f"{what} (exit status {process.returncode}):\n{err[-4000:]}")


async def _kill(process: asyncio.subprocess.Process, acks: Acks) -> None:
    """SIGKILL (no clean-up of any kind), then count the acknowledgements it printed before."""
    if process.returncode is None:
        process.send_signal(getattr(signal, "SIGKILL", signal.SIGTERM))
    await process.wait()
    assert process.stdout is not None
    acks.add((await process.stdout.read()).decode().splitlines())


async def _owned_with_a_result(store: Store, run_id: str) -> Lease:
    lease = await owned_run(store, run_id)
    await store.update_run(lease, RunStatus.WAITING, result=payload(0, RESULT_SIZE), wake_at=wake_of(0))
    return lease


def _rounds_of(records: Iterable[tuple[str, str]], prefix: str) -> tuple[list[int], list[str]]:
    """The rounds of ``(id, value)`` records named ``<prefix><n>``, and the records not whole."""
    rounds, broken = [], []
    for name, value in records:
        said = round_of(value)
        if not name.startswith(prefix) or said is None or name != f"{prefix}{said}":
            broken.append(f"{name!r} holds {value[:60]!r}... (not the whole value written)")
        else:
            rounds.append(said)
    return sorted(rounds), broken


async def _problems_after_a_kill(store: Store, run_id: str, acks: Acks) -> list[str]:
    """What is wrong with the data a killed writer left: each record must be whole, and hold what
    the last acknowledged write wrote, or the write after it (done, but killed before saying so)."""
    problems: list[str] = []
    try:
        run = await store.get_run(run_id)
        steps = await store.load_steps(run_id)
        deliveries = await store.list_signals(deliveries_of(run_id), "tick")
    except Exception as exc:
        return [f"reading the store failed: {type(exc).__name__}: {exc}"]
    if run is None:
        return [f"run {run_id!r} is gone"]
    n = round_of(run.result)
    acked = acks.last["run"]
    if n is None or run.wake_at != wake_of(n):
        problems.append(
            f"the run holds half a write: result {(run.result or '')[:60]!r}..., wake_at {run.wake_at!r}"
        )
    elif n not in (acked, acked + 1):
        problems.append(f"the run holds round {n}'s result; round {acked} was the last acknowledged")
    if run.lease_token != 1 or run.status is not RunStatus.WAITING:
        problems.append(f"the run's status or token changed: {run.status.value}, token {run.lease_token}")
    for kind, prefix, records in (
        ("step", "s", [(s.key, s.result or "") for s in steps]),
        ("signal", "d", [(d.delivery_id, d.payload) for d in deliveries]),
    ):
        rounds, broken = _rounds_of(records, prefix)
        problems += broken
        done = acks.last[kind]
        if rounds not in (list(range(1, done + 1)), list(range(1, done + 2))):
            problems.append(f"{kind}s of rounds {rounds} are stored; rounds 1 to {done} were acknowledged")
    seqs = [d.seq for d in deliveries]
    if seqs != sorted(set(seqs)):
        problems.append(f"delivery seq numbers are not increasing: {seqs}")
    return problems


class AtomicityContract(ContractBase, contract=True):
    """No torn writes: concurrent readers and crashes see each write whole or not at all."""

    @requires(Capability.MULTI_PROCESS)
    async def test_a_reader_never_sees_half_of_a_write_another_process_is_making(
        self, store: Store, stores: StoreHarness
    ) -> None:
        lease = await _owned_with_a_result(store, "torn")
        order = WriteUntilStopped(lease, 1, None, RESULT_SIZE, STEP_SIZE)
        writer = await _start(order, await stores.blueprint(store))
        wrong: list[str] = []
        seen: set[int] = set()
        reads = 0
        try:
            deadline = time.monotonic() + READ_FOR
            while time.monotonic() < deadline and len(wrong) < 5:
                reads += 1
                try:
                    run = await store.get_run("torn")
                    steps = await store.load_steps("torn")
                    deliveries = await store.list_signals(deliveries_of("torn"), "tick")
                except Exception as exc:
                    wrong.append(f"read {reads} raised {type(exc).__name__}: {exc}")
                    continue
                assert run is not None, "run 'torn' disappeared while another process wrote to it"
                n = round_of(run.result)
                if n is None or run.wake_at != wake_of(n):
                    wrong.append(
                        f"read {reads} returned half a write: result {(run.result or '')[:60]!r}..., "
                        f"wake_at {run.wake_at!r} (round {n})"
                    )
                    continue
                if seen and n < max(seen):
                    wrong.append(f"read {reads} returned round {n} after round {max(seen)}")
                seen.add(n)
                for kind, prefix, records in (
                    ("step", "s", [(s.key, s.result or "") for s in steps]),
                    ("delivery", "d", [(d.delivery_id, d.payload) for d in deliveries]),
                ):
                    wrong += [f"read {reads}: {kind} {b}" for b in _rounds_of(records, prefix)[1]]
        finally:
            acks = Acks()
            await _kill(writer, acks)
        assert not wrong, "reading while another process wrote returned torn or failed reads:\n" + "\n".join(
            wrong[:5]
        )
        assert len(seen) >= 2, (
            f"the reader saw {sorted(seen)} only in {READ_FOR:g} s ({acks.last['run']} rounds written): "
            "the other process's writes never overlapped the reads, so this proves nothing"
        )

    @requires(Capability.PERSISTENT)
    async def test_a_process_killed_while_writing_leaves_every_record_whole(
        self, store: Store, stores: StoreHarness
    ) -> None:
        lease = await _owned_with_a_result(store, "killed")
        await store.close()  # the writer is alone with the data (the store need not be multi-process)
        seed = int.from_bytes(os.urandom(4), "big")
        rng = random.Random(seed)
        acks = Acks()
        for kill in range(1, KILLS + 1):
            # From the first round not acknowledged whole: rewriting a round stores the same values.
            order = WriteUntilStopped(lease, min(acks.last.values()) + 1, None, RESULT_SIZE, STEP_SIZE)
            writer = await _start(order, await stores.blueprint(store))
            try:
                # Let it write a few rounds, then kill it at a random moment of the next write.
                for _ in range(rng.randint(2, 6)):
                    acks.add([await _line(writer)])
                gaps = [b - a for a, b in zip(acks.times[-4:], acks.times[-3:], strict=False)]
                await asyncio.sleep(rng.uniform(0, max(gaps, default=0.01)))
            finally:
                await _kill(writer, acks)
            try:
                reopened = await stores.reopen(store)
            except Exception as exc:
                problems = [f"reopening it failed: {type(exc).__name__}: {exc}"]
            else:
                problems = await _problems_after_a_kill(reopened, "killed", acks)
                await reopened.close()
            assert not problems, (
                f"after the writing process was killed (kill {kill} of {KILLS}, random seed {seed}; "
                f"last acknowledged: {acks.last}), the reopened store shows:\n" + "\n".join(problems[:8])
            )
