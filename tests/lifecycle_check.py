"""``CheckedStore``: a store wrapper that records every status change and checks it against the
run lifecycle (``durable._lifecycle.TRANSITIONS``), for tests that drive whole scenarios."""

from __future__ import annotations

from typing import Any

from durable._lifecycle import Actor, allowed
from durable.store import Lease, RunQuery, RunRecord, RunStatus, SignalRecord, StepRecord, Store

Change = tuple[str, RunStatus | None, RunStatus, Actor]


class CheckedStore(Store):
    """Delegates to ``inner``; ``changes`` lists ``(run_id, before, after, actor)`` of every
    write that changed a status, ``violations`` those the lifecycle does not allow."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.changes: list[Change] = []
        self.violations: list[Change] = []

    async def _status(self, run_id: str) -> RunStatus | None:
        run = await self.inner.get_run(run_id)
        return None if run is None else run.status

    async def _checked(self, run_id: str, actor: Actor, op: Any) -> Any:
        before = await self._status(run_id)
        result = await op
        after = await self._status(run_id)
        if after is not None and (before is not after or actor is Actor.OWNER):
            change = (run_id, before, after, actor)
            self.changes.append(change)
            if not allowed(before, after, actor):
                self.violations.append(change)
        return result

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        return await self._checked(run.run_id, Actor.CALLER, self.inner.create_run(run))  # type: ignore[no-any-return]

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self.inner.get_run(run_id)

    async def claim_run(self, run_id: str, owner: str, lease_seconds: float) -> Lease | None:
        before = await self._status(run_id)
        lease = await self.inner.claim_run(run_id, owner, lease_seconds)
        if lease is not None:
            change = (run_id, before, RunStatus.RUNNING, Actor.EXECUTOR)
            self.changes.append(change)
            if not allowed(*change[1:]):
                self.violations.append(change)
        return lease

    async def renew_lease(
        self, lease: Lease, lease_seconds: float, *, activity: str | None = None
    ) -> RunRecord:
        op = self.inner.renew_lease(lease, lease_seconds, activity=activity)
        return await self._checked(lease.run_id, Actor.OWNER, op)  # type: ignore[no-any-return]

    async def update_run(
        self, lease: Lease, status: RunStatus, *, activity: str | None = None, **fields: Any
    ) -> None:
        op = self.inner.update_run(lease, status, activity=activity, **fields)
        await self._checked(lease.run_id, Actor.OWNER, op)

    async def request_cancel(self, run_id: str) -> RunRecord | None:
        return await self._checked(run_id, Actor.CALLER, self.inner.request_cancel(run_id))  # type: ignore[no-any-return]

    async def reset_run(self, run_id: str) -> RunRecord | None:
        return await self._checked(run_id, Actor.CALLER, self.inner.reset_run(run_id))  # type: ignore[no-any-return]

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return await self.inner.list_runs(query)

    async def due_runs(self, now: float, limit: int = 100) -> list[RunRecord]:
        return await self.inner.due_runs(now, limit)

    async def delete_run(self, run_id: str) -> bool:
        return await self.inner.delete_run(run_id)

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        return await self.inner.load_steps(run_id)

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        return await self.inner.save_step(lease, step)

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        return await self.inner.send_signal(run_id, name, delivery_id, payload)

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        return await self.inner.list_signals(run_id, name)

    async def wait_for_signal(
        self, run_id: str, name: str, index: int, timeout: float | None
    ) -> SignalRecord | None:
        return await self.inner.wait_for_signal(run_id, name, index, timeout)
