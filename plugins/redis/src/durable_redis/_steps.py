"""Checkpoints of ``RedisStore`` (``save_step``, ``save_steps``, ``load_steps``): a base class of
it. A checkpoint is one script (``_checkpoints``), fenced by the run's lease token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from durable._decode import decode_failure
from durable.errors import StoreError
from durable.store import Lease, StepRecord
from durable_redis import _keys as k
from durable_redis._calls import Call
from durable_redis._checkpoints import checkpoint, stored_steps


class StepMethods:
    """``load_steps``, ``save_step`` and ``save_steps`` of ``RedisStore`` (a base class of it,
    before ``Store``)."""

    keys: k.KeySpace
    label: str

    if TYPE_CHECKING:

        async def _script(self, call: Call, run_id: str, field: str = "run") -> Any: ...
        async def _lost(self, lease: Lease, current: Any) -> StoreError: ...

    async def load_steps(self, run_id: str) -> list[StepRecord]:
        key = self.keys.run_keys(run_id)[1]
        call = Call.plain(f"loading the steps of run {run_id!r}", "HGETALL", key)
        fields = await self._script(call, run_id, "steps")
        steps = [self._step(run_id, step_key, value) for step_key, value in fields.items()]
        return sorted(steps, key=lambda step: step.finished_at)

    def _step(self, run_id: str, key: str, value: str) -> StepRecord:
        try:
            return k.decode_step(run_id, key, value)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise decode_failure(self.label, run_id, f"step {key!r}", exc) from exc

    async def save_step(self, lease: Lease, step: StepRecord) -> StepRecord:
        batch = (step,)  # save_steps of one step, without its frame: every checkpoint comes here
        reply = await self._script(self._checkpoint(lease, batch), lease.run_id, "steps")
        if reply == 1:
            return step
        return (await self._saved(lease, batch, reply))[0]

    async def save_steps(self, lease: Lease, steps: Iterable[StepRecord]) -> list[StepRecord]:
        batch = tuple(steps)
        if not batch:
            return []
        reply = await self._script(self._checkpoint(lease, batch), lease.run_id, "steps")
        return await self._saved(lease, batch, reply)

    def _checkpoint(self, lease: Lease, batch: tuple[StepRecord, ...]) -> Call:
        for step in batch:
            if step.run_id != lease.run_id:
                raise ValueError(f"step {step.key!r} belongs to run {step.run_id!r}, not {lease.run_id!r}")
        return checkpoint(self.keys, lease, batch)

    async def _saved(self, lease: Lease, batch: tuple[StepRecord, ...], reply: Any) -> list[StepRecord]:
        """What is stored after the checkpoint script answered ``reply`` (see ``checkpoint``)."""
        if reply == 1:
            return list(batch)
        if reply[0] == 0:
            raise await self._lost(lease, reply[1])
        try:
            return stored_steps(batch, reply[1:])
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise decode_failure(self.label, lease.run_id, "steps", exc) from exc
