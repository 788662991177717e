"""Stores written for python-durable 0.2, run through today's ``Store`` contract.

python-durable 0.2 told users to subclass ``Store`` with seven methods: ``setup``,
``get_step``, ``set_step``, ``mark_run_done``, ``mark_run_failed``, ``get_signal`` and
``set_signal``. Such a class still subclasses ``durable.Store`` (``Store.__init_subclass__``
recognises it) and ``Workflow(db=MyStore())`` wraps it in ``LegacyStoreAdapter``:

- Runs, leases and statuses live in this process's memory, kept as the memory store keeps
  them: the adapter is a single-process store, without the ``persistent`` and
  ``multi-process`` capabilities. Two processes must not execute runs of one such store.
- Checkpoints and signal deliveries go through the seven methods, so they outlive the
  process: a run called again after a crash replays its finished steps.

What the adapter writes with them, per run:

- step ``durable:run``: the run's workflow, inputs and creation time, when it is created;
  a later process finds the run again from it.
- steps ``durable:journal``, ``durable:journal#1``, ...: one checkpoint each, written once, in
  order. Loading a run reads them up to the first one missing (the seven methods cannot list).
- signal ``name``: the first delivery of ``name``, its payload as 0.2 stored it; later
  deliveries of the name (distinct ``delivery_id``s) go to ``name#1``, ``name#2``, ... and
  carry their delivery id. Only names this process delivered or read are listed for a run.
- ``mark_run_done`` and ``mark_run_failed`` when a run ends (best effort: 0.2 never read them).

Deleting a run (``prune``) forgets it in memory only: the seven methods cannot delete.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from typing import Any, ClassVar, Protocol, cast

from durable import _codec
from durable._records import ErrorInfo, Lease, RunRecord, RunStatus, SignalRecord, StepRecord, StepStatus
from durable.errors import ConfigurationError, LeaseLost
from durable.store import Store, compact_json

try:
    from durable_memory import InMemoryStore
except ImportError as exc:  # python-durable installs it; durable-core alone does not
    raise ConfigurationError(
        "a store written for python-durable 0.2 runs through an in-memory adapter, which needs the "
        "durable-memory package (pip install python-durable)"
    ) from exc

__all__ = ["LegacyStore", "LegacyStoreAdapter"]

log = logging.getLogger("durable")

RUN_STEP = "durable:run"
JOURNAL_STEP = "durable:journal"
_DELIVERY = "__durable_delivery__"


class LegacyStore(Protocol):
    """python-durable 0.2's ``Store``: the seven methods it declared (``close`` came with its stores)."""

    async def setup(self) -> None: ...
    async def get_step(self, run_id: str, step_id: str) -> tuple[bool, Any]: ...
    async def set_step(self, run_id: str, step_id: str, result: Any, attempt: int = 1) -> None: ...
    async def mark_run_done(self, run_id: str) -> None: ...
    async def mark_run_failed(self, run_id: str, error: str) -> None: ...
    async def get_signal(self, run_id: str, name: str) -> tuple[bool, Any]: ...
    async def set_signal(self, run_id: str, name: str, payload: Any) -> bool: ...
    async def close(self) -> None: ...


def _slot(base: str, n: int) -> str:
    return base if n == 0 else f"{base}#{n}"


def _signal_slot(name: str, n: int) -> str:
    # '#' separates the slot number: escaped in the name, so "a#1" never meets the second "a".
    escaped = name.replace("%", "%25").replace("#", "%23") if "#" in name or "%" in name else name
    return _slot(escaped, n)


class LegacyStoreAdapter(InMemoryStore):
    """A python-durable 0.2 store (``legacy``) as a single-process store of today's contract."""

    name = "legacy"
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, legacy: Store, *, stacklevel: int = 2) -> None:
        super().__init__()
        self.legacy = cast(LegacyStore, legacy)
        self._journals: dict[str, dict[str, StepRecord]] = {}
        """Checkpoints read or written so far, by run."""
        self._slots: dict[str, int] = {}
        """How many journal records each run has in the legacy store (the next one's number)."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._deliveries: dict[tuple[str, str], list[SignalRecord]] = {}
        """Deliveries found in the legacy store, by run and name (never change once there)."""
        warnings.warn(
            f"{type(legacy).__name__} implements python-durable 0.2's seven-method Store API; durable runs "
            "it through an adapter that keeps runs, leases and statuses in this process's memory (a "
            "single-process store). Implement durable.store.Store's methods and check the store with "
            "the contract suite (pip install durable-contract-tests) to share it between processes.",
            DeprecationWarning,
            stacklevel=stacklevel + 1,
        )

    def __repr__(self) -> str:
        return f"<LegacyStoreAdapter for {self.legacy!r}>"

    async def open(self, *, create: bool = True) -> None:
        # python-durable 0.2's setup() always creates: create=False is not honoured (the CLI,
        # which asks for it, opens stores by URL, never through this adapter).
        self._locks.clear()  # locks belong to the event loop that used them; this may be a new one
        await self.legacy.setup()

    async def close(self) -> None:
        await self.legacy.close()

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    # -- runs: in memory, found again from their header after a restart ------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        if await self.get_run(run.run_id) is None:
            recovered = await self._recover(run.run_id)
            if recovered is not None:
                await super().create_run(recovered)
            else:
                header = {
                    "workflow": run.workflow,
                    "inputs": _codec._decode(run.inputs),
                    "inputs_digest": run.inputs_digest,
                    "created_at": run.created_at,
                    "deadline": run.deadline,
                    "parent_run_id": run.parent_run_id,
                }
                await self.legacy.set_step(run.run_id, RUN_STEP, header, 1)
        return await super().create_run(run)

    async def _recover(self, run_id: str) -> RunRecord | None:
        """The run a previous process created, from its header; pending, so it may be claimed."""
        found, header = await self.legacy.get_step(run_id, RUN_STEP)
        if not found or not isinstance(header, dict):
            return None
        return RunRecord(
            run_id=run_id,
            workflow=header["workflow"],
            status=RunStatus.PENDING,
            inputs=compact_json(header["inputs"]),
            inputs_digest=header["inputs_digest"],
            created_at=header["created_at"],
            updated_at=time.time(),
            deadline=header.get("deadline"),
            parent_run_id=header.get("parent_run_id"),
        )

    async def update_run(
        self,
        lease: Lease,
        status: RunStatus,
        *,
        result: str | None = None,
        error: str | None = None,
        wake_at: float | None = None,
        release: bool = False,
        activity: str | None = None,
    ) -> None:
        await super().update_run(
            lease, status, result=result, error=error, wake_at=wake_at, release=release, activity=activity
        )
        try:
            if status is RunStatus.COMPLETED:
                await self.legacy.mark_run_done(lease.run_id)
            elif status is RunStatus.FAILED:
                message = ErrorInfo.from_json(error).message if error else ""
                await self.legacy.mark_run_failed(lease.run_id, message)
        except Exception:
            log.warning("%r: could not record how run %r ended", self.legacy, lease.run_id, exc_info=True)

    async def delete_run(self, run_id: str) -> bool:
        self._journals.pop(run_id, None)
        self._slots.pop(run_id, None)
        for key in [key for key in self._deliveries if key[0] == run_id]:
            del self._deliveries[key]
        return await super().delete_run(run_id)

    # -- steps: one journal record per checkpoint, through get_step / set_step -------------------

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        async with self._lock(run_id):
            journal = await self._read_journal(run_id)
        return sorted(journal.values(), key=lambda step: step.finished_at)

    async def _read_journal(self, run_id: str) -> dict[str, StepRecord]:
        """The run's checkpoints, reading the records written since the last read (lock held)."""
        journal = self._journals.setdefault(run_id, {})
        n = self._slots.get(run_id, 0)
        while True:
            found, data = await self.legacy.get_step(run_id, _slot(JOURNAL_STEP, n))
            if not found:
                break
            step = _step_from_data(run_id, data)
            earlier = journal.get(step.key)
            if earlier is None or earlier.status is not StepStatus.COMPLETED:  # first completed wins
                journal[step.key] = step
            n += 1
        self._slots[run_id] = n
        return journal

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        async with self._lock(lease.run_id):
            await self._check_lease(lease)
            journal = await self._read_journal(lease.run_id)
            earlier = journal.get(step.key)
            if earlier is not None and earlier.status is StepStatus.COMPLETED:
                return earlier
            n = self._slots[lease.run_id]
            await self.legacy.set_step(lease.run_id, _slot(JOURNAL_STEP, n), _step_data(step), step.attempts)
            self._slots[lease.run_id] = n + 1
            journal[step.key] = step
            return step

    async def _check_lease(self, lease: Lease) -> None:
        run = await self.get_run(lease.run_id)
        if run is None or run.lease_token != lease.token:
            raise LeaseLost.stale(lease.run_id, lease.token, None if run is None else run.lease_token)

    # -- signals: through get_signal / set_signal, first write wins ------------------------------

    async def send_signal(self, run_id: str, name: str, delivery_id: str, payload: str) -> bool:
        data = _codec._decode(payload)
        value = data if delivery_id == "" else {_DELIVERY: delivery_id, "payload": data}
        while True:
            known = await self.list_signals(run_id, name)
            if any(delivery.delivery_id == delivery_id for delivery in known):
                return False
            if await self.legacy.set_signal(run_id, _signal_slot(name, len(known)), value):
                break
            # Another writer took that slot first: read it, then try the next one.
        await self.list_signals(run_id, name)  # records the delivery just written, as any reader would
        # The memory half marks a waiting run due and wakes this process's waiters.
        await super().send_signal(run_id, name, delivery_id, payload)
        return True

    async def list_signals(self, run_id: str, name: str | None = None) -> list[SignalRecord]:
        if name is None:  # the seven methods cannot list names: those this process has seen
            names = [key[1] for key in self._deliveries if key[0] == run_id]
            found = [record for n in names for record in await self.list_signals(run_id, n)]
            return sorted(found, key=lambda record: record.sent_at)
        deliveries = self._deliveries.setdefault((run_id, name), [])
        while True:
            n = len(deliveries)
            present, value = await self.legacy.get_signal(run_id, _signal_slot(name, n))
            if len(deliveries) != n:  # another reader recorded that slot meanwhile
                continue
            if not present:
                return list(deliveries)
            delivery_id, data = "", value
            if type(value) is dict and value.keys() == {_DELIVERY, "payload"}:
                delivery_id, data = value[_DELIVERY], value["payload"]
            payload = compact_json(data)
            deliveries.append(SignalRecord(run_id, name, delivery_id, payload, n + 1, time.time()))


def _step_data(step: StepRecord) -> dict[str, Any]:
    return {
        "key": step.key,
        "task": step.task,
        "args_digest": step.args_digest,
        "status": step.status.value,
        "result": None if step.result is None else _codec._decode(step.result),
        "error": step.error,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
    }


def _step_from_data(run_id: str, data: dict[str, Any]) -> StepRecord:
    status = StepStatus(data["status"])
    return StepRecord(
        run_id=run_id,
        key=data["key"],
        task=data["task"],
        args_digest=data["args_digest"],
        status=status,
        result=compact_json(data["result"]) if status is StepStatus.COMPLETED else None,
        error=data.get("error"),
        attempts=data.get("attempts", 1),
        started_at=data["started_at"],
        finished_at=data["finished_at"],
    )
