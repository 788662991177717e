"""Runs in every state a store can be brought to through its own operations, as the lifecycle
makes them: the matrix the due-run, claim, cancel and transition contracts check a store against.

A cell is a stored status, a lease (``none``: no owner; ``live``; ``expired``: the owner is kept,
its lease is over), a wake time (``none``, ``past``, ``future``) and ``cancel_requested``: every
combination for ``running``, ``waiting``, ``completed``, ``failed`` and ``cancelled``, each reached
by creating a run its creator owns and writing it as its owner would. ``pending`` has only the
states the lifecycle leads to (created; reset after a cancel or a failure: no owner, no wake time,
no cancel request), and a few cells are reached the other ways the lifecycle has (a cancel that
ends a run at once, a signal delivered to a parked run, a lease given back).

``Operations`` makes every write and, when it records, reads the run before and after, so a test
can check each status change against ``durable._lifecycle``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from durable._lifecycle import TRANSITIONS, Actor, allowed
from durable.store import ErrorInfo, Lease, RunRecord, RunStatus, Store
from durable_contract_tests._kit import LONG_LEASE, OWNER_A, get, lease_of, make_run

P, R, W = RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING
C, F, X = RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED

LEASES = ("none", "live", "expired")
WAKES = ("none", "past", "future")
CLOCKS = 1.0
"""How far the store's clock (a database server's, say) may be from this process's: a lease given
back "now" by the store is judged expired at ``time.time() + CLOCKS``; live leases last a minute."""
T0 = 1_700_000_000.0
"""Cells are created one second apart from here, in a shuffled order (``created_at`` is not the
order of creation, so a store returning runs in insertion order shows it)."""

_ACTORS = {
    "create_run": Actor.CALLER,
    "claim_run": Actor.EXECUTOR,
    "renew_lease": Actor.OWNER,
    "update_run": Actor.OWNER,
    "request_cancel": Actor.CALLER,
    "reset_run": Actor.CALLER,
    "send_signal": Actor.CALLER,
}


def _sources(method: str) -> frozenset[RunStatus]:
    return frozenset(t.source for t in TRANSITIONS if t.by == method and t.source is not None)


CANCELLABLE = _sources("request_cancel")
"""Statuses ``request_cancel`` ends at once when nobody holds a live lease (``TRANSITIONS``)."""
RESETTABLE = _sources("reset_run")
"""Statuses ``reset_run`` takes back to ``pending`` (``TRANSITIONS``)."""


@dataclass(frozen=True)
class Cell:
    status: RunStatus
    lease: str = "none"
    wake: str = "none"
    cancel_requested: bool = False
    via: str = ""
    """How the cell is reached when not by its owner's writes (``reset after a cancel``, ...)."""

    @property
    def run_id(self) -> str:
        name = f"{self.status.value} lease={self.lease} wake={self.wake}"
        if self.cancel_requested:
            name += " cancel-requested"
        return f"{name} ({self.via})" if self.via else name


def cells() -> list[Cell]:
    grid = [
        Cell(status, lease, wake, flagged)
        for status in (R, W, C, F, X)
        for lease in LEASES
        for wake in WAKES
        for flagged in (False, True)
    ]
    return [
        *grid,
        Cell(P, via="created"),
        Cell(P, via="reset after a cancel"),
        Cell(P, via="reset after a failure"),
        Cell(X, cancel_requested=True, via="cancelled while pending"),
        Cell(X, cancel_requested=True, via="cancelled after failing"),
        Cell(X, "expired", cancel_requested=True, via="cancelled after its lease expired"),
        Cell(W, wake="signalled", via="a signal delivered while parked"),
        Cell(R, "expired", via="its lease given back"),
        Cell(W, "expired", via="its lease given back while waiting in process"),
    ]


@dataclass(frozen=True)
class Change:
    """One store operation on one run: its status before (``None``: no run yet) and after."""

    method: str
    run_id: str
    before: RunStatus | None
    after: RunStatus | None
    granted: bool = False
    """For ``claim_run``: whether it returned a lease (a claim is a transition even when the
    status stays ``running``)."""

    @property
    def actor(self) -> Actor:
        return _ACTORS[self.method]

    @property
    def changed(self) -> bool:
        return self.granted or self.before != self.after

    @property
    def listed(self) -> bool:
        """Whether ``TRANSITIONS`` lists this change, made by this method, for this actor."""
        if not self.changed:
            return True
        if self.after is None or not allowed(self.before, self.after, self.actor):
            return False
        return any(
            (t.source, t.target, t.actor, t.by) == (self.before, self.after, self.actor, self.method)
            for t in TRANSITIONS
        )

    def __str__(self) -> str:
        before = "no run" if self.before is None else self.before.value
        after = "no run" if self.after is None else self.after.value
        return f"{self.method} on {self.run_id!r} ({self.actor.value}): {before} -> {after}"


@dataclass
class Operations:
    """The store's writes the matrix uses; with ``record`` each is logged as a ``Change``."""

    store: Store
    record: bool = False
    changes: list[Change] = field(default_factory=list)

    async def _made(self, method: str, run_id: str, call: Callable[[], Awaitable[Any]]) -> Any:
        before = await self.store.get_run(run_id) if self.record else None
        result = await call()
        if self.record:
            after = await self.store.get_run(run_id)
            granted = method == "claim_run" and result is not None
            self.changes.append(
                Change(
                    method,
                    run_id,
                    None if before is None else before.status,
                    None if after is None else after.status,
                    granted,
                )
            )
        return result

    async def create(self, run: RunRecord) -> RunRecord:
        stored, created = await self._made("create_run", run.run_id, lambda: self.store.create_run(run))
        assert created, f"run {run.run_id!r} existed already"
        assert isinstance(stored, RunRecord)
        return stored

    async def claim(self, run_id: str, owner: str, lease_seconds: float = 30.0) -> Lease | None:
        lease: Lease | None = await self._made(
            "claim_run", run_id, lambda: self.store.claim_run(run_id, owner, lease_seconds)
        )
        return lease

    async def renew(self, lease: Lease, lease_seconds: float) -> RunRecord:
        run: RunRecord = await self._made(
            "renew_lease", lease.run_id, lambda: self.store.renew_lease(lease, lease_seconds)
        )
        return run

    async def update(self, lease: Lease, status: RunStatus, **fields: Any) -> None:
        await self._made("update_run", lease.run_id, lambda: self.store.update_run(lease, status, **fields))

    async def cancel(self, run_id: str) -> RunRecord | None:
        run: RunRecord | None = await self._made(
            "request_cancel", run_id, lambda: self.store.request_cancel(run_id)
        )
        return run

    async def reset(self, run_id: str) -> RunRecord | None:
        run: RunRecord | None = await self._made("reset_run", run_id, lambda: self.store.reset_run(run_id))
        return run

    async def signal(self, run_id: str, name: str = "go") -> bool:
        sent: bool = await self._made(
            "send_signal", run_id, lambda: self.store.send_signal(run_id, name, "", '"payload"')
        )
        return sent


@dataclass(frozen=True)
class Matrix:
    """The built runs, as the store returns them, by run id (each id names the run's cell)."""

    runs: dict[str, RunRecord]

    def oldest_first(self, run_ids: set[str]) -> list[str]:
        return sorted(run_ids, key=lambda run_id: self.runs[run_id].created_at)


async def build(ops: Operations, prefix: str = "") -> Matrix:
    """Every cell of ``cells()`` as a run with id ``prefix + cell.run_id``, each checked to be in
    the state its cell names before anything else is done with it."""
    now = time.time()
    wakes = {"none": None, "past": float(int(now) - 3600), "future": float(int(now) + 3600) + 0.5}
    plan = cells()
    order = list(range(len(plan)))
    random.Random(14).shuffle(order)
    made = await asyncio.gather(
        *(
            _make(ops, prefix + cell.run_id, cell, T0 + at, wakes)
            for cell, at in zip(plan, order, strict=True)
        ),
        return_exceptions=True,  # every build finishes before the test goes on (or fails)
    )
    for outcome in made:
        if isinstance(outcome, BaseException):
            raise outcome
    return Matrix({run.run_id: run for run in made if isinstance(run, RunRecord)})


async def _make(
    ops: Operations, run_id: str, cell: Cell, created_at: float, wakes: dict[str, float | None]
) -> RunRecord:
    steps: list[str] = []

    async def owned(lease_seconds: float = LONG_LEASE) -> Lease:
        steps.append("create_run (owned)" if lease_seconds > 0 else "create_run (owned, lease expired)")
        run = await ops.create(
            make_run(run_id, created_at=created_at, owner=OWNER_A, lease_seconds=lease_seconds)
        )
        return lease_of(run)

    async def step(what: str, call: Awaitable[Any]) -> Any:
        steps.append(what)
        return await call

    if cell.via == "created":
        await step("create_run", ops.create(make_run(run_id, created_at=created_at)))
    elif cell.via in ("reset after a cancel", "reset after a failure"):
        lease = await owned()
        final = X if "cancel" in cell.via else F
        await step(
            f"update_run({final.value}, release)", ops.update(lease, final, error=_ERROR, release=True)
        )
        await step("reset_run", ops.reset(run_id))
    elif cell.via == "cancelled while pending":
        await step("create_run", ops.create(make_run(run_id, created_at=created_at)))
        await step("request_cancel", ops.cancel(run_id))
    elif cell.via == "cancelled after failing":
        lease = await owned()
        await step("update_run(failed, release)", ops.update(lease, F, error=_ERROR, release=True))
        await step("request_cancel", ops.cancel(run_id))
    elif cell.via == "cancelled after its lease expired":
        await owned(lease_seconds=-LONG_LEASE)
        await step("request_cancel", ops.cancel(run_id))
    elif cell.via == "a signal delivered while parked":
        lease = await owned()
        await step("update_run(waiting, release)", ops.update(lease, W, release=True))
        await step("send_signal", ops.signal(run_id))
    elif cell.via.startswith("its lease given back"):
        lease = await owned()
        if cell.status is W:
            await step("update_run(waiting)", ops.update(lease, W))
        await step("renew_lease(lease, 0)", ops.renew(lease, 0))
    else:
        # The owner's way: a live lease, flagged while live, given back or released, then written.
        expired_at_creation = cell.lease == "expired" and not cell.cancel_requested
        lease = await owned(-LONG_LEASE if expired_at_creation else LONG_LEASE)
        if cell.cancel_requested:
            await step("request_cancel (live lease: only flagged)", ops.cancel(run_id))
        if cell.lease == "expired" and cell.cancel_requested:
            await step("renew_lease(lease, 0)", ops.renew(lease, 0))
        release = cell.lease == "none"
        error = _ERROR if cell.status is F else None
        await step(
            f"update_run({cell.status.value}, wake_at={cell.wake}{', release' if release else ''})",
            ops.update(lease, cell.status, error=error, wake_at=wakes[cell.wake], release=release),
        )
    run = await get(ops.store, run_id)
    problem = _mismatch(run, cell, wakes)
    if problem:
        raise AssertionError(
            f"building the run {run_id!r} ({' -> '.join(steps)}) left it with {problem}; the "
            f"lifecycle tests need each run in the state they name. The run read back: {run!r}"
        )
    return run


_ERROR = ErrorInfo("builtins.RuntimeError", "boom").to_json()


def _mismatch(run: RunRecord, cell: Cell, wakes: dict[str, float | None]) -> str:
    now = time.time() + CLOCKS
    lease = "none" if run.owner is None else ("live" if run.lease_is_live(now) else "expired")
    expected_owner = None if cell.lease == "none" else OWNER_A
    problems = []
    if run.status is not cell.status:
        problems.append(f"status {run.status.value} (expected {cell.status.value})")
    if run.owner != expected_owner:
        problems.append(f"owner {run.owner!r} (expected {expected_owner!r})")
    elif lease != cell.lease:
        problems.append(f"a {lease} lease, expiring at {run.lease_expires_at!r} (expected {cell.lease})")
    if cell.wake == "signalled":
        if run.wake_at is None:
            problems.append("no wake time (a delivered signal sets it to now)")
    elif run.wake_at != wakes[cell.wake]:
        problems.append(f"wake_at {run.wake_at!r} (expected {wakes[cell.wake]!r})")
    if run.cancel_requested is not cell.cancel_requested:
        problems.append(f"cancel_requested={run.cancel_requested} (expected {cell.cancel_requested})")
    return ", ".join(problems)


def record_after(before: RunRecord, after: RunRecord, **changes: Any) -> RunRecord:
    """``before`` with ``changes``, taking ``updated_at`` from ``after`` (a write may move it)."""
    return replace(before, updated_at=after.updated_at, **changes)


def differences(found: RunRecord, expected: RunRecord) -> str:
    """The fields where ``found`` is not ``expected``, as ``field: found (expected ...)``."""
    return ", ".join(
        f"{name} {getattr(found, name)!r} (expected {getattr(expected, name)!r})"
        for name in RunRecord.__dataclass_fields__
        if getattr(found, name) != getattr(expected, name)
    )
