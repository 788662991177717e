"""``durable runs check``: find the stored records that cannot be read, without changing any.

Workers and listings skip such records (``durable._decode``); this is how an operator finds
them all. Every run is read, with its steps and signals, and every stored value is parsed as the
engine would parse it on replay, so a record that would fail a resume is found before one does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from durable._decode import corruption
from durable._inspect import iter_runs
from durable._records import RunQuery, RunRecord, RunStatus
from durable.errors import StoreCorrupted
from durable.store import Store

__all__ = ["Damage", "check_store"]


@dataclass(frozen=True)
class Damage:
    """One record that cannot be read."""

    run_id: str
    field: str | None
    """The field at fault (``status``, ``inputs``, ``step 'fetch': result``), where known."""
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "field": self.field, "message": self.message}


async def check_store(store: Store, *, on_page: Callable[[int], None] | None = None) -> list[Damage]:
    """Every unreadable run record, step and signal in ``store``, in listing order."""
    found: list[Damage] = []
    async for run in iter_runs(store, RunQuery(), on_page=on_page):
        if run.status is RunStatus.CORRUPT:
            error = corruption(run)
            found.append(Damage(run.run_id, error.field, str(error)))
            continue
        try:
            found.extend(await _check_run(store, run))
        except StoreCorrupted as exc:
            found.append(Damage(run.run_id, exc.field, str(exc)))
    return found


async def _check_run(store: Store, run: RunRecord) -> list[Damage]:
    values: list[tuple[str, str | None]] = [("inputs", run.inputs), ("result", run.result)]
    for step in await store.load_steps(run.run_id):
        values += [(f"step {step.key!r}: result", step.result), (f"step {step.key!r}: error", step.error)]
    for signal in await store.list_signals(run.run_id):
        values.append((f"signal {signal.name!r} delivery {signal.delivery_id!r}: payload", signal.payload))
    damaged = []
    for name, text in values:
        if text is None:
            continue
        try:
            json.loads(text)
        except (ValueError, TypeError) as exc:
            message = f"run {run.run_id!r}: field {name!r} is not JSON text ({exc})"
            damaged.append(Damage(run.run_id, name, message))
    return damaged
